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
        ({"json": {"text": "a b", "head": "a", "tail": "b", "colour": "red"}}, 422, "unknown fields ['colour']"),
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
