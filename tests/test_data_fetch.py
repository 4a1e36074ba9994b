"""``pgmre data fetch mnre`` against a real HTTP server on 127.0.0.1 serving a fixture tree built here.

The server honours Range and injects faults per file name: a connection dropped mid-file, a stall past
the client's timeout, 500 then success, 404, corrupted bytes. Every failure must name the file, the URL
and both hashes, exit non-zero and leave no half-written file; a re-run must download nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.fetch import HttpOrigin, Manifest, ManifestFile, RetryPolicy, load_manifest
from pgmre.data.upstream import FetchReport, fetch_mnre
from pgmre.labels import RelationVocab

runner = CliRunner()
FAST = RetryPolicy(attempts=3, timeout_s=0.3, backoff_s=0.01, max_backoff_s=0.02)
TEXT_REPO, CAPTION_REPO = "acme/mnre-text", "acme/mnre-captions"
COMMITS = {TEXT_REPO: "a" * 40, CAPTION_REPO: "b" * 40}
RELATIONS = ["None", "/per/per/peer", "/per/loc/place_of_residence", "/org/org/subsidiary"]
SIZES = {"train": 300, "val": 20, "test": 20}  # samples; train is ~60 KB, enough to cut mid-file
SHARED_UPSTREAM = Path(__file__).resolve().parents[1] / "../shared/data/upstream"
SHARED_MNRE = Path(__file__).resolve().parents[1] / "../shared/data/mnre"


def _img_ids(split: str) -> list[str]:
    return [f"{split}_img_{i}.jpg" for i in range((SIZES[split] + 2) // 3)]


def _text(split: str) -> bytes:
    lines = []
    for i in range(SIZES[split]):
        record = {
            "token": ["Ada", "met", "Bob", "in", "Paris", f"#{i}"],
            "h": {"name": "Ada", "pos": [0, 1]},
            "t": {"name": "Bob", "pos": [2, 3]},
            "img_id": f"{split}_img_{i // 3}.jpg",
            "relation": RELATIONS[i % len(RELATIONS)],
        }
        lines.append(repr(record))
    return ("\n".join(lines) + "\n").encode()


def _upstream_files(split: str) -> dict[tuple[str, str], tuple[dict, bytes]]:
    """(repo, path) -> (manifest fields, bytes), in the upstream formats (stem keys, BLIP lines, inf entries)."""
    stems = {img[: -len(".jpg")]: f"caption of {img} by cogvlm" for img in _img_ids(split)}
    stems["inf"] = "a placeholder image of no sample"
    llava = {stem: f"\nsaid by llava about {stem} ü" for stem in stems}
    blip = [repr({"img_id": img, "text": f"blip: {img}"}) for img in _img_ids(split)] + [
        repr({"img_id": "inf.png", "text": "placeholder"})
    ]
    text_name = "mnre_val .txt" if split == "val" else f"mnre_{split}.txt"
    captions = "data/caption"
    return {
        (TEXT_REPO, f"mnre_txt/{text_name}"): ({"kind": "text", "format": "mnre"}, _text(split)),
        (CAPTION_REPO, f"{captions}/cogvlm_{split}.json"): (
            {"kind": "captions", "source": "cogvlm", "format": "stem_json"},
            json.dumps(stems).encode(),
        ),
        (CAPTION_REPO, f"{captions}/minicpm_{split}.json"): (
            {"kind": "captions", "source": "minicpm", "format": "stem_json"},
            json.dumps({stem: f"minicpm: {stem}" for stem in stems}).encode(),
        ),
        (CAPTION_REPO, f"{captions}/llavanext_{split}.json"): (
            {"kind": "captions", "source": "llavanext", "format": "stem_json"},
            json.dumps(llava).encode(),
        ),
        (CAPTION_REPO, f"{captions}/BLIP_{split}.txt"): (
            {"kind": "captions", "source": "blip", "format": "img_id_lines"},
            ("\n".join(blip) + "\n").encode(),
        ),
        (CAPTION_REPO, f"data/txt/phrase_text_{split}.json"): (
            {"kind": "aux", "format": "raw", "label_carrying": True, "description": "phrases"},
            json.dumps({str(i): "Ada Bob person" for i in range(SIZES[split])}).encode(),
        ),
        (CAPTION_REPO, f"data/txt/mre_{split}_dict.pth"): (
            {"kind": "aux", "format": "raw", "label_carrying": True, "description": "crops"},
            bytes(range(256)) * 4,
        ),
    }


def build_upstream(root: Path, url: str) -> Manifest:
    """Write the fixture tree (``OWNER/REPO/PATH``) under ``root``; its manifest's home is ``url``."""
    entries = []
    for split in SIZES:
        for (repo, path), (fields, data) in _upstream_files(split).items():
            target = root / repo / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            sha = hashlib.sha256(data).hexdigest()
            entries.append(
                {
                    "split": split,
                    **fields,
                    "repo": repo,
                    "commit": COMMITS[repo],
                    "path": path,
                    "size": len(data),
                    "sha256": sha,
                }
            )
    return Manifest.model_validate({"name": "mnre-fixture", "url": url, "files": entries})


class UpstreamServer:
    """Serves a directory over HTTP/1.1 with Range; ``faults[file name]`` picks a misbehaviour:

    ``drop``: the first answer stops halfway and closes; ``stall``: the first answer stops halfway and
    hangs past the timeout; ``slow``: every answer hangs before its headers; ``e500``: the first answer
    is a 500; ``404``: always missing; ``corrupt``: one byte flipped; ``norange``: Range ignored.
    """

    def __init__(self, root: Path, hang_s: float = 1.0) -> None:
        self.root, self.hang_s = root, hang_s
        self.faults: dict[str, str] = {}
        self.requests: list[tuple[str, str, str | None]] = []  # method, URL path as sent, Range
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_HEAD(self) -> None:
                server.respond(self, head=True)

            def do_GET(self) -> None:
                # the client may give up first (timeouts): expected under the stall faults
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.respond(self, head=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def gets(self, name: str | None = None) -> list[tuple[str, str, str | None]]:
        return [
            r for r in self.requests if r[0] == "GET" and (name is None or unquote(r[1]).endswith("/" + name))
        ]

    def respond(self, handler: BaseHTTPRequestHandler, head: bool) -> None:
        raw_path = urlsplit(handler.path).path
        relative = unquote(raw_path).lstrip("/")
        name = relative.rsplit("/", 1)[-1]
        with self.lock:
            self.requests.append(("HEAD" if head else "GET", raw_path, handler.headers.get("Range")))
            nth = sum(1 for r in self.gets(name)) if not head else 0
        fault = self.faults.get(name, "")
        path = self.root / relative
        if fault == "404" or not path.is_file():
            return self._status(handler, 404)
        if fault == "e500" and nth == 1:
            return self._status(handler, 500)
        if fault == "slow" and not head:
            time.sleep(self.hang_s)
        data = path.read_bytes()
        if fault == "corrupt":
            data = data[:-1] + bytes([data[-1] ^ 1])
        start, ranged = 0, handler.headers.get("Range")
        if ranged and fault != "norange":
            start = int(ranged.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                return self._status(handler, 416)
        handler.send_response(206 if start else 200)
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        body = data[start:]
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if head:
            return
        if fault in ("drop", "stall") and nth == 1:
            handler.wfile.write(body[: len(body) // 2])
            handler.wfile.flush()
            if fault == "stall":
                time.sleep(self.hang_s)
            handler.close_connection = True
            return
        handler.wfile.write(body)

    @staticmethod
    def _status(handler: BaseHTTPRequestHandler, status: int) -> None:
        body = b'{"error": "injected"}'
        handler.send_response(status)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command != "HEAD":
            handler.wfile.write(body)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[UpstreamServer]:
    upstream = UpstreamServer(tmp_path / "upstream")
    upstream.thread.start()
    yield upstream
    upstream.httpd.shutdown()
    upstream.httpd.server_close()


@pytest.fixture
def manifest(server: UpstreamServer) -> Manifest:
    """The fixture tree's manifest; its home is a GitHub-like template with the commit in the query."""
    return build_upstream(server.root, server.url + "/{repo}/{path}?commit={commit}")


def _fetch(dest: Path, manifest: Manifest, **kwargs: Any) -> FetchReport:
    kwargs.setdefault("splits", ["train", "val"])
    kwargs.setdefault("retry", FAST)
    return fetch_mnre(dest, manifest=manifest, progress=False, **kwargs)


def _file(manifest: Manifest, name: str) -> ManifestFile:
    return next(f for f in manifest.files if f.name == name)


def _no_partial_files(dest: Path) -> bool:
    return not [p for p in dest.rglob("*") if p.name.endswith((".part", ".tmp"))] if dest.exists() else True


# ----------------------------------------------------------------------------------------- success


def test_fetch_converts_upstream_formats_to_pgmre_layout(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest
) -> None:
    dest = tmp_path / "data" / "mnre"
    report = _fetch(dest, manifest)
    assert report.ok and not report.verified and len(report.downloaded) == 10  # text + 4 captions, 2 splits

    assert (dest / "mnre_train.txt").read_bytes() == _text("train")
    assert (dest / "mnre_val.txt").read_bytes() == _text("val")  # the upstream name has a space
    assert RelationVocab.from_file(dest / "rel2id.json") == RelationVocab.mnre()
    for split in ("train", "val"):
        images = _img_ids(split)
        cogvlm = json.loads((dest / "captions" / f"cogvlm_{split}.json").read_text())
        assert list(cogvlm) == images  # stems -> img_id, the inf placeholder dropped, upstream order
        assert cogvlm[images[0]] == f"caption of {images[0]} by cogvlm"
        llava = json.loads((dest / "captions" / f"llavanext_{split}.json").read_text(encoding="utf-8"))
        assert llava[images[1]] == f"said by llava about {images[1][:-4]} ü"  # leading newline stripped
        blip = json.loads((dest / "captions" / f"blip_{split}.json").read_text())
        assert blip == {img: f"blip: {img}" for img in images}
    assert not (dest / "aux").exists() and not (dest / "mnre_test.txt").exists()

    # every GET went to the pinned commit, the space percent-encoded, and nothing was fetched twice
    gets = server.gets()
    assert len(gets) == 10 and all(r[2] is None for r in gets)
    assert any(r[1] == f"/{TEXT_REPO}/mnre_txt/mnre_val%20.txt" for r in gets)
    provenance = json.loads((dest / "fetch.json").read_text())
    assert {f["sha256"] for f in provenance["files"]} == {
        f.sha256 for f in manifest.select(["train", "val"], manifest.caption_sources(), False)
    }
    assert provenance["outputs"]["mnre_val.txt"] == hashlib.sha256(_text("val")).hexdigest()
    assert _no_partial_files(dest)


def test_rerun_downloads_nothing_and_refetches_only_a_damaged_file(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest
) -> None:
    dest = tmp_path / "mnre"
    assert _fetch(dest, manifest).ok
    first = len(server.gets())

    again = _fetch(dest, manifest)
    assert again.ok and not again.downloaded and len(again.verified) == 10
    assert len(server.gets()) == first  # no GET at all

    damaged = dest / "upstream" / CAPTION_REPO / "data/caption/BLIP_val.txt"
    damaged.write_bytes(b"not the file")
    repaired = _fetch(dest, manifest)
    assert [f.name for f in repaired.downloaded] == ["BLIP_val.txt"]
    assert len(server.gets()) == first + 1
    assert hashlib.sha256(damaged.read_bytes()).hexdigest() == _file(manifest, "BLIP_val.txt").sha256


def test_aux_files_go_to_aux_flagged_as_label_carrying(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest
) -> None:
    dest = tmp_path / "mnre"
    report = _fetch(dest, manifest, aux=True, captions=[])
    assert report.ok and not (dest / "captions").exists()
    names = {"phrase_text_train.json", "phrase_text_val.json", "mre_train_dict.pth", "mre_val_dict.pth"}
    assert names <= {p.name for p in (dest / "aux").iterdir()}
    assert (dest / "aux" / "mre_val_dict.pth").read_bytes() == bytes(range(256)) * 4
    flags = json.loads((dest / "aux" / "label_carrying.json").read_text())
    assert (
        flags["label_carrying"] is True and flags["protocol"] == "published" and set(flags["files"]) == names
    )
    assert "published protocol" in (dest / "aux" / "README.md").read_text()
    assert any("label-carrying" in note for note in report.notes)


# ------------------------------------------------------------------------------- faults and resume


@pytest.mark.parametrize("fault", ["drop", "stall"])
def test_interrupted_download_resumes_with_range(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest, fault: str
) -> None:
    """A connection dropped (or stalled past the timeout) halfway: the next try asks for the rest."""
    server.faults["mnre_train.txt"] = fault
    dest = tmp_path / "mnre"
    report = _fetch(dest, manifest, captions=[])
    assert report.ok, [str(e) for e in report.failures]
    assert (dest / "mnre_train.txt").read_bytes() == _text("train")
    tries = server.gets("mnre_train.txt")
    assert len(tries) == 2 and tries[0][2] is None
    assert tries[1][2] == f"bytes={len(_text('train')) // 2}-"  # resumed, not restarted
    assert _no_partial_files(dest)


def test_partial_file_from_an_earlier_run_is_resumed(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest
) -> None:
    dest = tmp_path / "mnre"
    server.faults["mnre_train.txt"] = "drop"
    failed = _fetch(dest, manifest, captions=[], retry=RetryPolicy(attempts=1, timeout_s=0.3))
    assert not failed.ok and "gave up after 1 attempts" in str(failed.failures[0])
    part = dest / "upstream" / TEXT_REPO / "mnre_txt/mnre_train.txt.part"
    assert part.stat().st_size == len(_text("train")) // 2  # kept for the next run, under a .part name
    assert not (dest / "upstream" / TEXT_REPO / "mnre_txt/mnre_train.txt").exists()
    assert (
        not (dest / "mnre_train.txt").exists() and not (dest / "mnre_val.txt").exists()
    )  # nothing converted

    assert _fetch(dest, manifest, captions=[]).ok
    assert server.gets("mnre_train.txt")[-1][2] == f"bytes={len(_text('train')) // 2}-"
    assert (dest / "mnre_train.txt").read_bytes() == _text("train") and not part.exists()


@pytest.mark.parametrize("fault", ["norange", "stale"])
def test_resume_that_cannot_work_restarts_from_zero(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest, fault: str
) -> None:
    """A server that ignores Range, or a .part holding other bytes: the file still arrives intact."""
    dest = tmp_path / "mnre"
    part = dest / "upstream" / TEXT_REPO / "mnre_txt/mnre_train.txt.part"
    part.parent.mkdir(parents=True)
    if fault == "norange":
        server.faults["mnre_train.txt"] = "norange"
        part.write_bytes(_text("train")[:100])
    else:
        part.write_bytes(b"x" * 100)  # e.g. left by another version of the file
    assert _fetch(dest, manifest, captions=[]).ok
    assert (dest / "mnre_train.txt").read_bytes() == _text("train")
    ranges = [r[2] for r in server.gets("mnre_train.txt")]
    assert ranges == (["bytes=100-"] if fault == "norange" else ["bytes=100-", None])


def test_500_then_success(tmp_path: Path, server: UpstreamServer, manifest: Manifest) -> None:
    server.faults["cogvlm_val.json"] = "e500"
    report = _fetch(tmp_path / "mnre", manifest)
    assert report.ok and len(server.gets("cogvlm_val.json")) == 2


def test_slow_server_times_out_and_gives_up(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest
) -> None:
    server.faults["cogvlm_val.json"] = "slow"
    dest = tmp_path / "mnre"
    started = time.monotonic()
    report = _fetch(dest, manifest)
    assert time.monotonic() - started < 10  # bounded by 3 timeouts of 0.3 s and short backoff
    (failure,) = report.failures
    message = str(failure)
    assert f"{CAPTION_REPO}/data/caption/cogvlm_val.json" in message
    assert "gave up after 3 attempts: timed out" in message
    assert f"{server.url}/{CAPTION_REPO}/data/caption/cogvlm_val.json" in message
    assert _file(manifest, "cogvlm_val.json").sha256 in message and "no complete file" in message
    assert len(server.gets("cogvlm_val.json")) == 3
    assert not (dest / "upstream" / CAPTION_REPO / "data/caption/cogvlm_val.json").exists()
    assert not (dest / "captions").exists() and not (dest / "mnre_train.txt").exists()
    # the other files arrived and are kept verified: the next run fetches only the missing one
    assert len(report.downloaded) == 9


def test_wrong_hash_names_file_url_and_both_hashes(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest
) -> None:
    server.faults["mnre_val .txt"] = "corrupt"
    dest = tmp_path / "mnre"
    result = runner.invoke(app, _cli(dest, manifest, tmp_path))
    assert result.exit_code == 1
    served = bytearray(_text("val"))
    served[-1] ^= 1
    assert f"{TEXT_REPO}/mnre_txt/mnre_val .txt: sha256 mismatch" in result.stderr
    assert f"{server.url}/{TEXT_REPO}/mnre_txt/mnre_val%20.txt?commit={'a' * 40}" in result.stderr
    assert _file(manifest, "mnre_val .txt").sha256 in result.stderr
    assert hashlib.sha256(served).hexdigest() in result.stderr
    assert not (dest / "upstream" / TEXT_REPO / "mnre_txt" / "mnre_val .txt").exists()
    assert not (dest / "mnre_val.txt").exists() and _no_partial_files(dest)
    assert len(server.gets("mnre_val .txt")) == 1  # a wrong hash is not retried


def test_404_names_the_file_and_is_not_retried(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest
) -> None:
    server.faults["BLIP_train.txt"] = "404"
    dest = tmp_path / "mnre"
    result = runner.invoke(app, _cli(dest, manifest, tmp_path))
    assert result.exit_code == 1
    assert f"{CAPTION_REPO}/data/caption/BLIP_train.txt: HTTP 404" in result.stderr
    assert _file(manifest, "BLIP_train.txt").sha256 in result.stderr
    assert len(server.gets("BLIP_train.txt")) == 1
    assert not (dest / "captions").exists() and _no_partial_files(dest)


# ---------------------------------------------------------------------------- mirrors, CLI, manifest


def _cli(dest: Path, manifest: Manifest, tmp_path: Path, *extra: str) -> list[str]:
    path = tmp_path / "manifest.json"
    path.write_text(manifest.model_dump_json())
    return ["data", "fetch", "mnre", "--dest", str(dest), "--manifest", str(path), "--no-progress", *extra]


def test_cli_success_then_rerun(tmp_path: Path, server: UpstreamServer, manifest: Manifest) -> None:
    dest = tmp_path / "mnre"
    args = _cli(dest, manifest, tmp_path, "--splits", "train,val", "--captions", "cogvlm", "--progress")
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "4 file(s) fetched, 0 already verified" in first.stdout
    assert "dropped 1 upstream caption(s) of no image of the split (inf)" in first.stderr
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "0 file(s) fetched, 4 already verified" in again.stdout
    check = runner.invoke(app, ["data", "check", str(dest / "mnre_val.txt"), "--json"])
    assert check.exit_code == 0 and json.loads(check.stdout)["samples"] == SIZES["val"]


@pytest.mark.parametrize("kind", ["directory", "url"])
def test_mirror_without_a_split(
    tmp_path: Path, server: UpstreamServer, manifest: Manifest, kind: str
) -> None:
    """A mirror lacking the test split: reported by name, fatal only when the split is requested."""
    for file in manifest.files:
        if file.split == "test":
            (server.root / file.mirror_path).unlink()
    mirror = str(server.root) if kind == "directory" else server.url + "/"
    dest = tmp_path / "mnre"
    without = runner.invoke(app, _cli(dest, manifest, tmp_path, "--mirror", mirror, "--splits", "train,val"))
    assert without.exit_code == 0, without.output
    assert f"split 'test' is not in {mirror} (not requested)" in without.stderr
    assert (dest / "mnre_val.txt").read_bytes() == _text("val")

    default = runner.invoke(app, _cli(tmp_path / "other", manifest, tmp_path, "--mirror", mirror))
    assert default.exit_code == 1
    assert f"split 'test' is not in {mirror}; fetch the others with --splits train,val" in default.stderr
    assert f"{TEXT_REPO}/mnre_txt/mnre_test.txt: " in default.stderr
    assert not (tmp_path / "other" / "mnre_train.txt").exists()  # nothing converted


def test_bad_options_exit_2(tmp_path: Path, manifest: Manifest) -> None:
    for extra, message in [
        (["--splits", "train,dev"], "unknown split(s) dev"),
        (["--splits", ""], "no split selected"),
        (["--captions", "gpt4"], "unknown caption source(s) gpt4"),
        (["--mirror", str(tmp_path / "nowhere")], "mirror directory not found"),
    ]:
        result = runner.invoke(app, _cli(tmp_path / "mnre", manifest, tmp_path, *extra))
        assert result.exit_code == 2 and message in result.stderr, result.output
    bad = tmp_path / "bad.json"
    bad.write_text('{"name": "x"}')
    result = runner.invoke(app, ["data", "fetch", "mnre", "--manifest", str(bad)])
    assert result.exit_code == 2 and "not a valid dataset manifest" in result.stderr


def test_shipped_manifest_pins_every_file() -> None:
    manifest = load_manifest("mnre")
    assert manifest.splits() == ["train", "val", "test"]
    assert manifest.caption_sources() == ["cogvlm", "minicpm", "llavanext", "blip"]
    for split in manifest.splits():
        kinds = Counter(f.kind for f in manifest.files if f.split == split)
        assert kinds == {"text": 1, "captions": 4, "aux": 2}
    assert all(f.size is not None for f in manifest.files if f.split != "test")
    assert all(f.label_carrying == (f.kind == "aux") for f in manifest.files)
    val = _file(manifest, "mnre_val .txt")
    assert HttpOrigin(manifest.url).location(val) == (
        "https://raw.githubusercontent.com/thecharm/MNRE/354211ed7b8d066f989ade6fa6c4a387e3c6de81/mnre_txt/mnre_val%20.txt"
    )


def test_fetch_from_the_workspace_upstream_reproduces_shared_mnre(tmp_path: Path) -> None:
    """The real upstream files (when this workspace has them) convert to exactly ../shared/data/mnre."""
    if not SHARED_UPSTREAM.is_dir() or not SHARED_MNRE.is_dir():
        pytest.skip("no ../shared/data/upstream here")
    dest = tmp_path / "mnre"
    report = fetch_mnre(dest, splits=["train", "val"], mirror=str(SHARED_UPSTREAM), progress=False)
    assert report.ok and report.unavailable_splits == ["test"]
    for split in ("train", "val"):
        assert (dest / f"mnre_{split}.txt").read_bytes() == (SHARED_MNRE / f"mnre_{split}.txt").read_bytes()
        for source in ("cogvlm", "minicpm", "llavanext", "blip"):
            name = f"captions/{source}_{split}.json"
            assert json.loads((dest / name).read_text()) == json.loads((SHARED_MNRE / name).read_text()), name
    assert json.loads((dest / "rel2id.json").read_text()) == json.loads(
        (SHARED_MNRE / "rel2id.json").read_text()
    )
