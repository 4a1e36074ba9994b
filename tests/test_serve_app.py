"""The HTTP service in-process: endpoints, JSON and multipart, limits, and every refusal as a 4xx."""

from __future__ import annotations

import base64
import io
import json
import random
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.data.types import Sample
from pgmre.serve.app import ServeLimits, create_app
from pgmre.serve.predictor import Predictor


def png(width: int = 16, height: int = 16) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def caption_predictor(trained_caption_run: Path) -> Predictor:
    return Predictor.from_pretrained(trained_caption_run)


@pytest.fixture(scope="module")
def image_predictor(trained_image_run: Path) -> Predictor:
    return Predictor.from_pretrained(trained_image_run)


@pytest.fixture(scope="module")
def caption_client(caption_predictor: Predictor) -> TestClient:
    return TestClient(create_app(caption_predictor, ServeLimits(max_body_bytes=64 << 10, max_text_chars=300)))


@pytest.fixture(scope="module")
def image_client(image_predictor: Predictor) -> TestClient:
    limits = ServeLimits(max_body_bytes=256 << 10, max_image_bytes=32 << 10, max_image_pixels=300 * 300)
    return TestClient(create_app(image_predictor, limits))


@pytest.fixture(scope="module")
def sample(synthetic_dataset: SyntheticDataset) -> Sample:
    return load_samples(synthetic_dataset.test)[3]


def body_of(sample: Sample) -> dict:
    return {"text": sample.text, "head": sample.head.name, "tail": sample.tail.name}


def test_health_labels_and_page(caption_client: TestClient, caption_predictor: Predictor) -> None:
    health = caption_client.get("/health").json()
    assert health["status"] == "ok"
    assert health["inputs"] == {"visual": "caption", "explanations": True, "generates_explanations": True}
    assert health["limits"]["max_text_chars"] == 300
    assert caption_client.get("/labels").json()["labels"] == caption_predictor.labels
    page = caption_client.get("/")
    assert page.status_code == 200 and 'id="form"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for asset in ("/static/app.js", "/static/style.css"):
        assert caption_client.get(asset).status_code == 200, asset


def test_json_prediction_equals_the_api(
    caption_client: TestClient, caption_predictor: Predictor, sample: Sample
) -> None:
    body = {**body_of(sample), "caption": "a red circle at a stadium", "top_k": 4}
    response = caption_client.post("/predict", json=body)
    assert response.status_code == 200, response.text
    expected = caption_predictor.predict(
        sample.text, sample.head.name, sample.tail.name, caption="a red circle at a stadium", top_k=4
    )
    assert response.json() == json.loads(json.dumps(expected.to_dict()))
    spans = {**body, "head": {"name": sample.head.name, "pos": [sample.head.start, sample.head.end]}}
    assert caption_client.post("/predict", json=spans).json()["relation"] == expected.relation


def test_multipart_with_image_file(
    image_client: TestClient, image_predictor: Predictor, sample: Sample, synthetic_dataset: SyntheticDataset
) -> None:
    data = (synthetic_dataset.image_dir / (sample.img_id or "")).read_bytes()
    head = json.dumps({"name": sample.head.name, "pos": [sample.head.start, sample.head.end]})
    response = image_client.post(
        "/predict",
        data={"text": sample.text, "head": head, "tail": sample.tail.name, "top_k": "2"},
        files={"image": ("post.jpg", data, "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    expected = image_predictor.predict(sample.text, sample.head.name, sample.tail.name, image=data, top_k=2)
    assert response.json() == json.loads(json.dumps(expected.to_dict()))
    assert response.json()["visual_slots"] == 3
    data_url = "data:image/jpeg;base64," + base64.b64encode(data).decode()
    as_json = image_client.post("/predict", json={**body_of(sample), "image": data_url, "top_k": 2})
    assert as_json.json() == response.json()


@pytest.mark.parametrize(
    ("kwargs", "status", "message"),
    [
        ({"content": b'{"text": "a', "headers": {"content-type": "application/json"}}, 400, "malformed JSON"),
        ({"json": ["not", "an", "object"]}, 422, "expected a JSON object"),
        ({"content": b"[" * 50000, "headers": {"content-type": "application/json"}}, 400, "nested too deeply"),
        ({"json": {"text": "Jonas Berg joined Summit Bank", "head": "Jonas Berg"}}, 422, "missing field(s): tail"),
        ({"json": {"text": "Jonas Berg joined Summit Bank", "head": "Paris", "tail": "Summit Bank"}}, 422,
         "head: 'Paris' does not occur in the text"),
        ({"json": {"text": "Paris and Paris again", "head": "Paris", "tail": "again"}}, 422, "occurs 2 times"),
        ({"json": {"text": "a b", "head": "a", "tail": "b", "colour": "red"}}, 422, "unknown fields 'colour'"),
        ({"json": {"text": "a b", "head": "a", "tail": "b", "top_k": 0}}, 422, "top_k"),
        ({"json": {"text": "a " * 200, "head": "a", "tail": "b"}}, 422, "over the limit of 300"),
        ({"json": {"text": "a b", "head": "a" * 301, "tail": "b"}}, 422, "head: 301 characters, over the limit"),
        ({"json": {"text": "a b", "head": "a", "tail": {"name": "b" * 400, "pos": [1, 2]}}}, 422,
         "tail.name: 400 characters, over the limit of 300"),
        ({"json": {"text": "a b", "head": "a", "tail": "b", "image": "/etc/hostname"}}, 422, "never read"),
        ({"json": {"text": "a b", "head": "a", "tail": "b", "explanations": {"head": "x"}}}, 422, "explanations"),
        ({"content": b"text=a", "headers": {"content-type": "text/plain"}}, 415, "application/json"),
        ({"content": b"x" * (70 << 10), "headers": {"content-type": "application/json"}}, 413, "request body"),
    ],
)  # fmt: skip
def test_bad_requests_get_4xx_with_a_message(
    caption_client: TestClient, kwargs: dict, status: int, message: str
) -> None:
    response = caption_client.post("/predict", **kwargs)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]


def test_image_refusals(
    image_client: TestClient, sample: Sample, synthetic_dataset: SyntheticDataset
) -> None:
    form = {"text": sample.text, "head": sample.head.name, "tail": sample.tail.name}
    real_file = str(synthetic_dataset.image_dir / (sample.img_id or ""))

    def post(**kwargs: object) -> tuple[int, str]:
        response = image_client.post("/predict", **kwargs)  # type: ignore[arg-type]
        return response.status_code, response.json()["error"]

    # A path to a real, readable image is refused however it is sent: the server never opens paths.
    for image in (real_file, f"file://{real_file}", "http://127.0.0.1/x.jpg"):
        status, error = post(json={**form, "image": image})
        assert status == 422 and "file paths are never read" in error
    status, error = post(data={**form, "image": real_file})
    assert status == 422 and "file paths are never read" in error

    status, error = post(data=form, files={"image": ("x.jpg", b"\x89PNG but not an image", "image/png")})
    assert status == 422 and "not a readable image" in error
    status, error = post(data=form, files={"image": ("big.png", png(400, 400), "image/png")})
    assert status == 413 and "400x400 pixels, over the limit of 90000" in error
    noisy = Image.frombytes("RGB", (150, 150), random.Random(0).randbytes(150 * 150 * 3))  # incompressible
    buffer = io.BytesIO()
    noisy.save(buffer, format="PNG")
    assert len(buffer.getvalue()) > 32 << 10
    status, error = post(data=form, files={"image": ("noise.png", buffer.getvalue(), "image/png")})
    assert status == 413 and "over the limit of 32768 bytes" in error
    status, error = post(json={**form, "image": "data:image/png;base64,@@@"})
    assert status == 422 and "not valid base64" in error
    status, error = post(json={**form, "caption": "a red circle"})
    assert status == 422 and "does not use captions" in error


def test_streamed_body_over_the_limit(caption_client: TestClient) -> None:
    chunks = iter([b'{"text": "', b"x" * (40 << 10), b"x" * (40 << 10), b'"}'])  # no Content-Length
    response = caption_client.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert response.status_code == 413 and "request body" in response.json()["error"]


def test_unexplained_entities_need_explanations(caption_client: TestClient) -> None:
    body = {"text": "Jonas Berg joined Acme Widgets", "head": "Jonas Berg", "tail": "Acme Widgets"}
    refused = caption_client.post("/predict", json=body)  # the run's only backend knows no "Acme Widgets"
    assert refused.status_code == 422 and "send 'explanations'" in refused.json()["error"]
    given = {**body, "explanations": ["A person.", "A company that makes widgets."]}
    answered = caption_client.post("/predict", json=given)
    assert answered.status_code == 200, answered.text
    assert answered.json()["explanations"] == {"head": "A person.", "tail": "A company that makes widgets."}


def test_without_generation_only_cached_or_given_explanations(
    trained_caption_run: Path, caption_predictor: Predictor, sample: Sample
) -> None:
    import sqlite3

    from pgmre.explain import ExplanationsMissing

    cached = caption_predictor.predict(sample.text, sample.head.name, sample.tail.name)  # now in the cache
    predictor = Predictor.from_pretrained(trained_caption_run, generate_explanations=False)
    client = TestClient(create_app(predictor, ServeLimits(max_text_chars=300)))
    assert client.get("/health").json()["inputs"]["generates_explanations"] is False
    answer = client.post("/predict", json=body_of(sample))
    assert answer.status_code == 200, answer.text
    assert answer.json()["explanations"] == json.loads(json.dumps(cached.to_dict()))["explanations"]

    database = predictor.pipeline.config.explain.cache

    def rows() -> tuple[int, int]:
        with sqlite3.connect(database) as db:
            return tuple(
                db.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("explanations", "failures")
            )

    before = rows()
    body = {"text": "Ingrid Holm founded Zeta Pumps", "head": "Ingrid Holm", "tail": "Zeta Pumps"}
    refused = client.post("/predict", json=body)
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert "'Ingrid Holm'" in error and "does not generate" in error and "send the explanations" in error
    assert rows() == before  # nothing generated, no failure recorded for a user's entities
    with pytest.raises(ExplanationsMissing, match="generate_explanations off"):
        predictor.predict(body["text"], body["head"], body["tail"])
    given = client.post("/predict", json={**body, "explanations": ["A person.", "A pump maker."]})
    assert given.status_code == 200, given.text
    assert rows() == before


# ---------------------------------------------------------------- regressions of issue 19 (hostile clients)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that declares ``width x height`` and holds no pixels: what a decompression bomb looks like
    to a server that reads the header (a few dozen bytes claiming gigabytes once decoded)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def multipart(parts: list[tuple[str, bytes, str | None]], boundary: str = "pgmre-test") -> bytes:
    """A multipart body by hand (``(name, value, filename)``), so that tests can send what clients may."""
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + value + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


def refused(response: object, status: int, message: str) -> None:
    assert response.status_code == status, response.text  # type: ignore[attr-defined]
    assert set(response.json()) == {"error"}, response.text  # type: ignore[attr-defined]
    assert message in response.json()["error"], response.text  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        ('{"text": "a b", "head": {"pos": [' + "1" * 5000 + ', 2]}, "tail": "b"}', 400, "digits"),
        ('{"text": "a b", "head": "a", "tail": "b", "top_k": ' + "9" * 5000 + "}", 400, "digits"),
        ('{"text": "a \\ud800 b", "head": "a", "tail": "b"}', 422, "surrogate"),
        ('{"text": "a b", "head": "a\\udfff", "tail": "b"}', 422, "surrogate"),
    ],
)
def test_issue19_json_values_python_cannot_take_are_4xx(
    caption_client: TestClient, body: str, status: int, message: str
) -> None:
    response = caption_client.post("/predict", content=body, headers={"content-type": "application/json"})
    refused(response, status, message)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("head", '{"pos": [' + "1" * 5000 + ", 2]}", "digits"),
        ("top_k", "7" * 5000, "digits"),
        ("tail", "[" * 20_000, "nested too deeply"),
        ("explanations", "{" * 20_000, "malformed JSON"),
    ],
)
def test_issue19_form_values_python_cannot_take_are_422(
    caption_client: TestClient, field: str, value: str, message: str
) -> None:
    form = {
        "text": "Jonas Berg joined Summit Bank",
        "head": "Jonas Berg",
        "tail": "Summit Bank",
        field: value,
    }
    refused(caption_client.post("/predict", data=form), 422, message)


def test_a_browser_form_with_line_breaks_keeps_the_marked_characters(caption_client: TestClient) -> None:
    """The page counts characters in the textarea (LF); the browser's form encoding sends CRLF."""
    text = "Jonas Berg\njoined Summit Bank"
    start = text.index("Summit Bank")
    tail = json.dumps({"name": "Summit Bank", "chars": [start, start + len("Summit Bank")]})
    fields = [("text", text.replace("\n", "\r\n").encode(), None), ("head", b"Jonas Berg", None)]
    body = multipart([*fields, ("tail", tail.encode(), None)])
    kind = {"content-type": "multipart/form-data; boundary=pgmre-test"}
    response = caption_client.post("/predict", content=body, headers=kind)
    assert response.status_code == 200, response.text
    expected = caption_client.post(
        "/predict", json={"text": text, "head": "Jonas Berg", "tail": "Summit Bank"}
    )
    assert response.json() == expected.json()


def test_an_unavailable_explanation_backend_is_503(trained_caption_run: Path, tmp_path: Path) -> None:
    """The server's own condition (here its summaries file is gone), not the request's: 503, not 500."""
    predictor = Predictor.from_pretrained(trained_caption_run)
    config = predictor.pipeline.config
    explain = config.explain.model_copy(
        update={"backend": "wikipedia", "wikipedia_summaries": str(tmp_path / "gone.json")}
    )
    predictor.pipeline.config = config.model_copy(update={"explain": explain})
    client = TestClient(create_app(predictor))
    post = {"text": "Jonas Berg joined Acme Widgets", "head": "Jonas Berg", "tail": "Acme Widgets"}
    refused(client.post("/predict", json=post), 503, "explanation backend is unavailable")


def test_issue19_form_parser_refusals_use_the_error_shape(caption_predictor: Predictor) -> None:
    caption_client = TestClient(create_app(caption_predictor))  # the default body limit, 10 MiB
    fields = [("text", b"a b", None), ("head", b"a", None), ("tail", b"b", None)]
    kind = {"content-type": "multipart/form-data; boundary=pgmre-test"}
    png_file = ("image", png(), "a.png")
    two_files = multipart([*fields, png_file, ("image", png(), "b.png")])
    refused(caption_client.post("/predict", content=two_files, headers=kind), 400, "Too many files")
    many_fields = multipart([(f"f{i}", b"x", None) for i in range(2000)])
    refused(caption_client.post("/predict", content=many_fields, headers=kind), 400, "Too many fields")
    many_urlencoded = "&".join(f"f{i}=x" for i in range(2000))
    form_kind = {"content-type": "application/x-www-form-urlencoded"}
    refused(
        caption_client.post("/predict", content=many_urlencoded, headers=form_kind), 400, "Too many fields"
    )
    no_boundary = {"content-type": "multipart/form-data"}
    refused(caption_client.post("/predict", content=multipart(fields), headers=no_boundary), 400, "boundary")
    garbage = random.Random(1).randbytes(4000)
    refused(caption_client.post("/predict", content=garbage, headers=kind), 400, "malformed form body")
    refused(caption_client.post("/predict", content=garbage, headers={"content-type": "application/json"}),
            400, "not UTF-8")  # fmt: skip
    refused(caption_client.get("/no/such/page"), 404, "Not Found")
    refused(caption_client.get("/predict"), 405, "Method Not Allowed")


def test_issue19_huge_images_are_413_however_they_are_sent(image_client: TestClient, sample: Sample) -> None:
    form = {"text": sample.text, "head": sample.head.name, "tail": sample.tail.name}
    bomb = png_header_only(20000, 20000)  # over Pillow's own limit: it refuses before our check runs
    response = image_client.post("/predict", data=form, files={"image": ("bomb.png", bomb, "image/png")})
    refused(response, 413, "pixels, over the limit of 90000")
    as_json = {**form, "image": "data:image/png;base64," + base64.b64encode(bomb).decode()}
    refused(image_client.post("/predict", json=as_json), 413, "pixels, over the limit of 90000")
    wide = png_header_only(10000, 10)  # under Pillow's limit, over the server's: exact size named
    response = image_client.post("/predict", data=form, files={"image": ("wide.png", wide, "image/png")})
    refused(response, 413, "10000x10 pixels, over the limit of 90000")


@pytest.mark.parametrize("size", [(1000, 1), (1, 1000), (1, 1), (299, 2)])
def test_issue19_thin_images_are_predicted(
    image_client: TestClient, sample: Sample, size: tuple[int, int]
) -> None:
    form = {"text": sample.text, "head": sample.head.name, "tail": sample.tail.name}
    response = image_client.post(
        "/predict", data=form, files={"image": ("thin.png", png(*size), "image/png")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["visual_slots"] >= 1


def test_issue19_cross_site_posts_are_refused(caption_client: TestClient) -> None:
    body = {"text": "Jonas Berg joined Summit Bank", "head": "Jonas Berg", "tail": "Summit Bank"}
    for headers in (
        {"origin": "https://evil.example"},
        {"origin": "null"},  # a sandboxed frame or a file:// page
        {"origin": "http://testserver.evil.example"},
        {"sec-fetch-site": "cross-site"},
        {"sec-fetch-site": "same-site", "origin": "http://testserver:3000"},  # another local port
        {"origin": "http://[::1"},  # unparseable
    ):
        refused(caption_client.post("/predict", json=body, headers=headers), 403, "request refused")
        refused(caption_client.post("/predict", data=body, headers=headers), 403, "request refused")
    # the page this server serves, a user typing the address, and clients that are not browsers
    for headers in (
        {"origin": "http://testserver", "sec-fetch-site": "same-origin"},
        {"sec-fetch-site": "none"},
        {},
    ):
        response = caption_client.post("/predict", data=body, headers=headers)
        assert response.status_code == 200, (headers, response.text)
    # reading is not refused: a link to the page from elsewhere still opens it
    page = caption_client.get("/", headers={"origin": "https://evil.example", "sec-fetch-site": "cross-site"})
    assert page.status_code == 200


def test_issue19_allowed_origins_may_post(caption_predictor: Predictor) -> None:
    client = TestClient(create_app(caption_predictor, allowed_origins=["https://mre.example.org/"]))
    body = {"text": "Jonas Berg joined Summit Bank", "head": "Jonas Berg", "tail": "Summit Bank"}
    headers = {"origin": "https://mre.example.org", "sec-fetch-site": "cross-site"}
    assert client.post("/predict", json=body, headers=headers).status_code == 200
    refused(client.post("/predict", json=body, headers={"origin": "https://other.example"}), 403, "Origin")


def open_maps(directory: Path) -> int:
    """Memory maps this process holds on files under ``directory`` (Linux)."""
    root = str(directory.resolve())
    return sum(root in line for line in Path("/proc/self/maps").read_text().splitlines())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="counts memory maps through /proc")
def test_issue19_feature_cache_stays_under_its_cap(trained_image_run: Path, sample: Sample) -> None:
    predictor = Predictor.from_pretrained(trained_image_run)
    cap_mb = 0.002  # 2 KiB: room for a few of the tiny ViT's entries
    client = TestClient(create_app(predictor, feature_cache_mb=cap_mb))
    disk = Path(predictor.pipeline.config.visual.feature_cache)
    shards, maps = sorted(disk.rglob("shard-*")), open_maps(disk)
    form = {"text": sample.text, "head": sample.head.name, "tail": sample.tail.name}
    colours = random.Random(0)
    for i in range(40):  # 40 distinct images
        colour = (colours.randrange(256), colours.randrange(256), i)
        buffer = io.BytesIO()
        Image.new("RGB", (24 + i % 7, 24), colour).save(buffer, format="PNG")
        response = client.post(
            "/predict", data=form, files={"image": ("p.png", buffer.getvalue(), "image/png")}
        )
        assert response.status_code == 200, response.text
        stats = client.get("/health").json()["feature_cache"]
        assert stats["mb"] <= cap_mb
    assert stats["evictions"] > 0 and stats["entries"] > 0
    assert sorted(disk.rglob("shard-*")) == shards  # the run's cache on disk is only read
    assert open_maps(disk) == maps  # 37 -> 237 maps after 100 images before the bound


def test_issue19_internal_errors_are_500_without_details_and_logged(
    caption_predictor: Predictor, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    client = TestClient(create_app(caption_predictor), raise_server_exceptions=False)

    def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(caption_predictor, "predict_prepared", broken)
    body = {"text": "Jonas Berg joined Summit Bank", "head": "Jonas Berg", "tail": "Summit Bank"}
    with caplog.at_level("ERROR", logger="pgmre.serve.app"):
        response = client.post("/predict", json=body)
    assert response.status_code == 500
    assert response.json() == {"error": "internal error (logged on the server)"}
    assert "secret internal detail" in caplog.text


def test_issue19_a_damaged_explanation_cache_makes_health_503_not_predict_500(
    trained_caption_run: Path, tmp_path: Path, sample: Sample
) -> None:
    import shutil
    import sqlite3

    import yaml

    from pgmre.explain import ExplanationCache
    from pgmre.explain.repair import repair_cache

    run = tmp_path / "run"
    shutil.copytree(trained_caption_run, run)
    config = yaml.safe_load((run / "config.yaml").read_text())
    cache = tmp_path / "explanations.sqlite"
    shutil.copy(config["explain"]["cache"], cache)
    config["explain"]["cache"] = str(cache)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    artifact = tmp_path / "artifact.jsonl"
    with sqlite3.connect(cache) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # everything in the main file before damaging it
        page = int(db.execute("PRAGMA page_size").fetchone()[0])
    with ExplanationCache(cache) as store:
        store.export_jsonl(artifact)
    client = TestClient(create_app(Predictor.from_pretrained(run)), raise_server_exceptions=False)
    assert client.get("/health").status_code == 200
    body = body_of(sample)
    assert client.post("/predict", json=body).status_code == 200

    data = bytearray(cache.read_bytes())  # random bytes over every page but the header
    data[page:] = random.Random(0).randbytes(len(data) - page)
    cache.write_bytes(bytes(data))
    refused(client.post("/predict", json=body), 503, "explanation cache is damaged")
    health = client.get("/health")
    assert health.status_code == 503, health.text
    assert health.json()["status"] == "unavailable"
    assert str(cache) in health.json()["error"] and "pgmre explain repair" in health.json()["error"]
    repair_cache(cache, artifact)  # a new file: checked again
    assert client.get("/health").status_code == 200
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200, answer.text


def test_cache_health_trusts_a_request_until_the_file_changes(tmp_path: Path) -> None:
    import os

    from pgmre.explain import ExplanationCache
    from pgmre.explain.cache import CacheCorrupt
    from pgmre.serve.health import ExplanationCacheHealth

    cache = tmp_path / "explanations.sqlite"
    assert ExplanationCacheHealth(cache).problem() is None  # not created yet: created on first use
    ExplanationCache(cache).close()
    health = ExplanationCacheHealth(cache)
    assert health.problem() is None
    health.report(CacheCorrupt(cache, "database disk image is malformed"))  # what a query met
    assert "malformed" in (health.problem() or "")
    os.utime(cache, ns=(1, 1))  # replaced or repaired: checked again
    assert health.problem() is None
    assert ExplanationCacheHealth(None).problem() is None  # a run without explanations
