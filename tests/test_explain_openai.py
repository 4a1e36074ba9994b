"""The openai backend against a real HTTP server on 127.0.0.1 that injects faults.

Every request must end explained or reported as failed: none lost, none duplicated, failures retried
on the next run, successes never asked again.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pgmre.config import ExplainConfig, OpenAIBackendConfig
from pgmre.explain import Explainer, ExplanationCache, ExplanationRequest
from pgmre.explain.backends.openai import OpenAIBackend, parse_reply, parse_retry_after
from pgmre.explain.cache import request_key
from pgmre.explain.prompts import get_template
from pgmre.explain.runner import producer_of

_ENTITY = re.compile(r"Who or what is (.+?)(?: \(mentioned with .*\))?\?$")


def expected_text(entity: str) -> str:
    return f"{entity} is thing {hashlib.sha1(entity.encode()).hexdigest()[:6]}."


class FakeOpenAI:
    """An OpenAI-compatible /chat/completions server. The entity's prefix picks its behaviour:

    ``ok`` answers; ``slow`` sleeps past the client timeout once; ``r429`` answers 429 with
    Retry-After once; ``e500`` fails twice with 500; ``bad`` sends broken JSON once; ``empty`` a reply
    without choices once; ``dead`` always 500; ``garbage`` always broken JSON; ``e400`` is a client error;
    ``gzip`` once sends a body that is not the gzip its header says; ``deep`` always JSON nested too
    deeply to parse; ``lag`` always takes ``lag_s`` before answering.
    """

    def __init__(self, slow_s: float = 1.0, retry_after: str = "0.3", lag_s: float = 0.0) -> None:
        self.attempts: dict[str, list[float]] = defaultdict(list)
        self.bodies: list[dict] = []
        self.lock = threading.Lock()
        self.in_flight = self.max_in_flight = 0
        self.slow_s, self.retry_after, self.lag_s = slow_s, retry_after, lag_s
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                entity = _ENTITY.search(body["messages"][-1]["content"]).group(1)
                with fake.lock:
                    fake.attempts[entity].append(time.monotonic())
                    fake.bodies.append(body)
                    n = len(fake.attempts[entity])
                    fake.in_flight += 1
                    fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
                try:
                    fake.respond(self, entity, n)
                finally:
                    with fake.lock:
                        fake.in_flight -= 1

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def respond(self, handler: BaseHTTPRequestHandler, entity: str, attempt: int) -> None:
        kind = entity.split("-")[0]
        status, payload, headers = 200, None, {}
        if self.lag_s:
            time.sleep(self.lag_s)
        if kind == "slow" and attempt == 1:
            time.sleep(self.slow_s)
        elif kind == "r429" and attempt == 1:
            status, headers = 429, {"Retry-After": self.retry_after}
        elif (kind == "e500" and attempt <= 2) or kind == "dead":
            status = 500
        elif (kind == "bad" and attempt == 1) or kind == "garbage":
            payload = b'{"choices": [{"message": {"content": "trunc'
        elif kind == "empty" and attempt == 1:
            payload = b'{"object": "chat.completion"}'
        elif kind == "e400":
            status = 400
        elif kind == "gzip" and attempt == 1:  # a body its Content-Encoding cannot decode
            payload, headers = b"not gzip at all", {"Content-Encoding": "gzip"}
        elif kind == "deep":
            payload = b"[" * 100_000
        if payload is None:
            reply = {
                "choices": [
                    {
                        "message": {"role": "assistant", "content": expected_text(entity)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"completion_tokens": 7},
            }
            payload = json.dumps(reply).encode() if status == 200 else b'{"error": "injected"}'
        try:
            handler.send_response(status)
            for name, value in headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client timed out and left

    def __enter__(self) -> FakeOpenAI:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(slow_s=1.5) as server:
        yield server


def openai_config(url: str, cache: Path, **openai: object) -> ExplainConfig:
    settings = {
        "concurrency": 4,
        "timeout_s": 1.0,
        "max_retries": 3,
        "retry_base_s": 0.01,
        "retry_max_s": 1.0,
    }
    settings.update(openai)
    return ExplainConfig(
        backend="openai",
        cache=str(cache),
        openai=OpenAIBackendConfig(base_url=url, model="fake-1", **settings),
    )


KINDS = ["ok", "slow", "r429", "e500", "bad", "empty", "dead", "garbage", "e400", "gzip", "deep"]


def test_every_request_ends_explained_or_failed(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    cfg = openai_config(fake_server.url, tmp_path / "c.sqlite")
    requests = [
        ExplanationRequest(f"{kind}-{i}", f"post {i} about {kind}") for kind in KINDS for i in range(2)
    ]
    requests += requests[:3]  # duplicates are asked once
    with ExplanationCache(cfg.cache) as cache:
        report = Explainer(cfg, cache).run(requests)
        explained = {r.entity for r in report.explained}
        failed = [f.request.entity for f in report.failed]
        assert len(failed) == len(set(failed))
        assert explained.isdisjoint(failed)
        assert explained | set(failed) == {r.entity for r in requests}
        assert set(failed) == {f"{k}-{i}" for k in ("dead", "garbage", "e400", "deep") for i in range(2)}
        for request, (text, backend) in report.explained.items():
            assert (text, backend) == (expected_text(request.entity), "openai")
        assert cache.count() == len(explained)
        assert {f["entity"] for f in cache.failures()} == set(failed)
        errors = {f.request.entity: f.error for f in report.failed}
    assert "HTTP 500" in errors["dead-0"] and "gave up after 4 attempts" in errors["dead-0"]
    assert "malformed reply" in errors["garbage-0"]
    assert "malformed reply (RecursionError" in errors["deep-0"]
    assert "HTTP 400" in errors["e400-0"]
    attempts = {entity: len(times) for entity, times in fake_server.attempts.items()}
    assert attempts["ok-0"] == 1 and attempts["e400-0"] == 1
    assert attempts["slow-0"] == 2 and attempts["bad-0"] == 2 and attempts["empty-0"] == 2
    assert attempts["gzip-0"] == 2 and attempts["deep-0"] == 4
    assert attempts["e500-0"] == 3 and attempts["dead-0"] == 4 and attempts["garbage-0"] == 4
    gap = fake_server.attempts["r429-0"][1] - fake_server.attempts["r429-0"][0]
    assert gap >= 0.28  # Retry-After: 0.3 honoured (the jittered backoff alone is ~0.01 s)
    body = fake_server.bodies[0]
    assert body["model"] == "fake-1" and body["max_tokens"] == 40 and body["temperature"] == 0.0


def test_rerun_retries_failures_only(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    cfg = openai_config(fake_server.url, tmp_path / "c.sqlite", max_retries=0)
    requests = [ExplanationRequest(e, "a post") for e in ("ok-a", "e500-b", "dead-c")]
    with ExplanationCache(cfg.cache) as cache:
        first = Explainer(cfg, cache).run(requests)
        assert {f.request.entity for f in first.failed} == {"e500-b", "dead-c"}
        second = Explainer(cfg, cache).run(requests)
        third = Explainer(cfg, cache).run(requests)
        failures = {f["entity"]: f["attempts"] for f in cache.failures()}
    assert second.cache_hits == 1 and {f.request.entity for f in second.failed} == {"e500-b", "dead-c"}
    assert third.cache_hits == 1 and "e500-b" in third.explained.__repr__()  # third attempt succeeds
    assert failures == {"dead-c": 3}  # e500-b left the failures table when it succeeded
    assert len(fake_server.attempts["ok-a"]) == 1


def test_rate_limit_spaces_request_starts(fake_server: FakeOpenAI, tmp_path: Path) -> None:
    cfg = openai_config(fake_server.url, tmp_path / "c.sqlite", concurrency=8, requests_per_second=25)
    requests = [ExplanationRequest(f"ok-{i}", "a post") for i in range(13)]
    with ExplanationCache(cfg.cache) as cache:
        report = Explainer(cfg, cache).run(requests)
    assert len(report.explained) == 13
    starts = sorted(t[0] for t in fake_server.attempts.values())
    # 12 gaps of 40 ms leave the client; at the server, a request held up by a busy CPU (the first one
    # also opens its connection) can shorten the span by some 0.1 s, where no limit gives a few ms
    assert starts[-1] - starts[0] >= 12 / 25 - 0.15


def test_concurrency_overlaps_slow_replies(tmp_path: Path) -> None:
    with FakeOpenAI(lag_s=0.3) as server:
        cfg = openai_config(server.url, tmp_path / "c.sqlite", concurrency=8, timeout_s=2.0)
        backend = OpenAIBackend(cfg.openai, get_template("v1"), 40)
        started = time.perf_counter()
        results = backend.explain([ExplanationRequest(f"ok-{i}", "a post") for i in range(8)])
        elapsed = time.perf_counter() - started
    assert all(r.ok for r in results) and [r.request.entity for r in results] == [f"ok-{i}" for i in range(8)]
    assert server.max_in_flight >= 4  # overlapped on the server...
    assert elapsed < 8 * 0.3 * 0.75  # ...and well under one-after-the-other


def test_api_key_from_env(fake_server: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PGMRE_TEST_KEY", "sk-test")
    cfg = openai_config(fake_server.url, tmp_path / "c.sqlite", api_key_env="PGMRE_TEST_KEY")
    backend = OpenAIBackend(cfg.openai, get_template("v1"), 40)
    assert backend._headers() == {"Authorization": "Bearer sk-test"}
    monkeypatch.delenv("PGMRE_TEST_KEY")
    assert backend._headers() == {}


def test_base_url_is_part_of_the_cache_key(tmp_path: Path) -> None:
    request = ExplanationRequest("Paris", "a post")
    keys = {
        request_key(
            producer_of(
                OpenAIBackend(openai_config(url, tmp_path / "c.sqlite").openai, get_template("v1"), 40)
            ),
            request,
        )
        for url in ("http://127.0.0.1:1/v1", "http://127.0.0.1:1/v1/", "http://127.0.0.1:2/v1")
    }
    assert len(keys) == 2  # a trailing slash is the same server, another port another one


def test_parse_helpers() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    reply = {
        "choices": [{"message": {"content": " Paris is a city. "}, "finish_reason": "length"}],
        "usage": {"completion_tokens": 5},
    }
    assert parse_reply(json.dumps(reply).encode()) == (" Paris is a city. ", 5, True)
