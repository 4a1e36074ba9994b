"""The SQLite cache, export/import, artifacts, the backend chain and ``explanations_for``."""

from __future__ import annotations

import gzip
import json
import sqlite3
from pathlib import Path

import pytest

from pgmre.config import ExplainConfig, OpenAIBackendConfig
from pgmre.data.types import Entity, Sample
from pgmre.explain import (
    CacheError,
    Explainer,
    ExplanationCache,
    ExplanationRequest,
    ExplanationResult,
    ExplanationsMissing,
    explanation_sources,
    explanations_for,
    import_artifact_once,
)
from pgmre.explain.cache import Producer, request_key
from test_explain_openai import FakeOpenAI, expected_text

PRODUCER = Producer("openai", "fake-1", "v1", {"max_tokens": 40, "temperature": 0.0})
SUMMARIES = {
    "Barcelona": {"extract": "Barcelona is a city in Spain."},
    "Paris": {"extract": "Paris is the capital of France."},
}


def make_samples() -> list[Sample]:
    def one(text: str, head: str, tail: str, line: int) -> Sample:
        words = tuple(text.split())
        h, t = words.index(head), words.index(tail)
        return Sample(
            words, Entity(head, h, h + 1), Entity(tail, t, t + 1), "x.jpg", "None", ("posts.txt", line)
        )

    return [
        one("Messi scores for Barcelona today", "Messi", "Barcelona", 1),
        one("Messi scores for Barcelona today", "Barcelona", "Messi", 2),  # same entities, same post
        one("Zidane visits Paris", "Zidane", "Paris", 3),
    ]


def config(
    tmp_path: Path, backend: str, url: str = "http://127.0.0.1:9/v1", **extra: object
) -> ExplainConfig:
    summaries = tmp_path / "summaries.json"
    summaries.write_text(json.dumps(SUMMARIES))
    return ExplainConfig(
        backend=backend,
        cache=str(tmp_path / "cache.sqlite"),
        wikipedia_summaries=str(summaries),
        openai=OpenAIBackendConfig(base_url=url, model="fake-1", timeout_s=2.0, retry_base_s=0.01),
        **extra,
    )


def test_record_lookup_failures(tmp_path: Path) -> None:
    request = ExplanationRequest("Paris", "a post")
    key = request_key(PRODUCER, request)
    with ExplanationCache(tmp_path / "c.sqlite") as cache:
        assert cache.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        cache.record(PRODUCER, [ExplanationResult(request, error="HTTP 500")])
        cache.record(PRODUCER, [ExplanationResult(request, error="timed out")])
        assert cache.failures() == [
            {"backend": "openai", "model": "fake-1", "template": "v1", "entity": "Paris",
             "sentence_sha1": request.sentence_sha1, "error": "timed out", "attempts": 2}
        ]  # fmt: skip
        cache.record(PRODUCER, [ExplanationResult(request, text="Paris is a city.", latency_s=0.5, tokens=5)])
        cache.record(PRODUCER, [ExplanationResult(ExplanationRequest("Nowhere", "a post"), miss=True)])
        assert cache.failures() == [] and cache.count() == 1
        hit = cache.get_many([key, "absent"])[key]
        assert (hit.explanation, hit.backend, hit.tokens, hit.latency_s) == (
            "Paris is a city.",
            "openai",
            5,
            0.5,
        )
        stats = cache.stats()
        assert stats["rows"] == 1 and stats["groups"][0]["mean_latency_s"] == 0.5
    # keys change with anything that changes the text
    other = Producer("openai", "fake-1", "v1", {"max_tokens": 20, "temperature": 0.0})
    assert request_key(other, request) != key
    assert request_key(PRODUCER, ExplanationRequest("Paris", "a post", "France")) != key


def test_not_a_cache_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "junk.sqlite"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(
        CacheError, match=r"junk\.sqlite: the explanation cache is damaged .*pgmre explain repair"
    ):
        ExplanationCache(path)


def fill(cache: ExplanationCache) -> None:
    results = [
        ExplanationResult(ExplanationRequest(f"E{i}", f"post {i}"), text=f"E{i} is a thing.", tokens=4)
        for i in range(5)
    ]
    cache.record(PRODUCER, results)
    partner = Producer("local", "m", "v2", {"max_new_tokens": 40, "decoding": "greedy"})
    cache.record(partner, [ExplanationResult(ExplanationRequest("E0", "post 0", "E1"), text="E0 with E1.")])


def test_export_import_roundtrip_is_reproducible(tmp_path: Path) -> None:
    with ExplanationCache(tmp_path / "a.sqlite") as a:
        fill(a)
        assert a.export_jsonl(tmp_path / "a.jsonl.gz") == 6
        keys = {row[0] for row in a.db.execute("SELECT key FROM explanations")}
    with gzip.open(tmp_path / "a.jsonl.gz", "rt") as lines:
        records = [json.loads(line) for line in lines]
    assert set(records[-1]) == {
        "entity",
        "sentence_sha1",
        "explanation",
        "backend",
        "model",
        "template",
        "settings",
        "tokens",
    }
    assert any(r.get("partner") == "E1" for r in records)
    assert not any("sentence" in r or "img_id" in r for r in records)
    with ExplanationCache(tmp_path / "b.sqlite") as b:
        assert b.import_jsonl(tmp_path / "a.jsonl.gz") == (6, 6)
        assert b.import_jsonl(tmp_path / "a.jsonl.gz") == (6, 0)  # idempotent
        assert {row[0] for row in b.db.execute("SELECT key FROM explanations")} == keys
        b.export_jsonl(tmp_path / "b.jsonl.gz")
        b.export_jsonl(tmp_path / "b.jsonl")
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()
    assert gzip.decompress((tmp_path / "a.jsonl.gz").read_bytes()) == (tmp_path / "b.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", r"bad\.jsonl:2: not valid JSON"),
        ('{"entity": "E"}', r"bad\.jsonl:2: field 'sentence_sha1' is missing"),
        ("[1]", r"bad\.jsonl:2: expected a JSON object"),
    ],
)
def test_import_names_file_line_field_and_writes_nothing(tmp_path: Path, line: str, message: str) -> None:
    good = {"entity": "E", "sentence_sha1": "a" * 40, "explanation": "E.", "backend": "local", "model": "m",
            "template": "v1", "settings": {}}  # fmt: skip
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(good) + "\n" + line + "\n")
    with ExplanationCache(tmp_path / "c.sqlite") as cache:
        with pytest.raises(CacheError, match=message):
            cache.import_jsonl(path)
        assert cache.count() == 0
    path.write_text(json.dumps({**good, "settings": "x"}) + "\n")
    with (
        ExplanationCache(tmp_path / "c.sqlite") as cache,
        pytest.raises(CacheError, match="'settings' must be a dict"),
    ):
        cache.import_jsonl(path)


def test_chain_uses_earlier_hits_without_asking_later_backends(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        cfg = config(tmp_path, "wikipedia,openai", server.url)
        first = explanations_for(make_samples(), cfg)
        assert first == [
            (expected_text("Messi"), "Barcelona is a city in Spain."),
            ("Barcelona is a city in Spain.", expected_text("Messi")),
            (expected_text("Zidane"), "Paris is the capital of France."),
        ]
        assert sorted(server.attempts) == ["Messi", "Zidane"]  # wikipedia hits never reach the server
        assert explanations_for(make_samples(), cfg, generate=False) == first
        assert explanations_for(make_samples(), cfg) == first
        assert sum(len(t) for t in server.attempts.values()) == 2  # the reruns were all cache hits
        assert explanation_sources(make_samples(), cfg) == [
            ("openai", "wikipedia"),
            ("wikipedia", "openai"),
            ("openai", "wikipedia"),
        ]


def test_generate_false_lists_what_is_missing(tmp_path: Path) -> None:
    cfg = config(tmp_path, "wikipedia,openai")
    with pytest.raises(ExplanationsMissing) as err:
        explanations_for(make_samples(), cfg, generate=False)
    message = str(err.value)
    assert "4 of 4 unique explanations (6 of 6 entity mentions) are missing" in message
    assert "posts.txt:1: head 'Messi'" in message and "posts.txt:3: tail 'Paris'" in message


def test_failures_are_reported_not_hidden(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        cfg = config(tmp_path, "openai", server.url)
        samples = [
            Sample(("dead-1", "and", "ok-2"), Entity("dead-1", 0, 1), Entity("ok-2", 2, 3), source=("f", 7))
        ]
        cfg.openai.max_retries = 1
        with pytest.raises(ExplanationsMissing, match=r"1 failed \(retried on the next run\)"):
            explanations_for(samples, cfg)


def test_artifact_is_imported_once_and_used_without_generation(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        cfg = (
            config(tmp_path / "a", "wikipedia,openai", server.url)
            if (tmp_path / "a").mkdir() is None
            else None
        )
        assert cfg is not None
        expected = explanations_for(make_samples(), cfg)
        with ExplanationCache(cfg.cache) as cache:
            cache.export_jsonl(tmp_path / "artifact.jsonl.gz")
    (tmp_path / "b").mkdir()
    # the same server (base_url is part of the key), the same summaries under another path
    fresh = config(
        tmp_path / "b", "wikipedia,openai", server.url, artifact=str(tmp_path / "artifact.jsonl.gz")
    )
    assert explanations_for(make_samples(), fresh, generate=False) == expected
    with ExplanationCache(fresh.cache) as cache:
        assert import_artifact_once(cache, tmp_path / "artifact.jsonl.gz") == 0
        cache.db.execute("DELETE FROM explanations")
        assert import_artifact_once(cache, tmp_path / "artifact.jsonl.gz") == 0  # same file: not again


def test_artifact_is_hashed_once_per_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hashlib
    from typing import IO

    from pgmre.explain import runner

    with ExplanationCache(tmp_path / "a.sqlite") as cache:
        cache.record(PRODUCER, [ExplanationResult(ExplanationRequest("Paris", "p"), text="A city.")])
        cache.export_jsonl(tmp_path / "artifact.jsonl.gz")
    hashed: list[str] = []
    real = hashlib.file_digest

    def counting(handle: IO[bytes], digest: str) -> hashlib._Hash:
        hashed.append(handle.name)
        return real(handle, digest)

    monkeypatch.setattr(runner.hashlib, "file_digest", counting)
    monkeypatch.setattr(runner, "_ARTIFACT_DIGESTS", {})
    artifact = tmp_path / "artifact.jsonl.gz"
    with ExplanationCache(tmp_path / "b.sqlite") as cache:
        assert import_artifact_once(cache, artifact) == 1
        for _ in range(3):  # as every served batch does
            assert import_artifact_once(cache, artifact) == 0
    assert len(hashed) == 1
    with ExplanationCache(tmp_path / "c.sqlite") as other:  # another cache still gets it, unhashed
        assert import_artifact_once(other, artifact) == 1
    assert len(hashed) == 1
    with ExplanationCache(tmp_path / "a.sqlite") as cache:
        cache.record(PRODUCER, [ExplanationResult(ExplanationRequest("Rome", "p"), text="A city.")])
        cache.export_jsonl(artifact)  # a changed file is hashed and imported again
    with ExplanationCache(tmp_path / "b.sqlite") as cache:
        assert import_artifact_once(cache, artifact) == 1
    assert len(hashed) == 2


def test_explainer_dedupes_and_counts(tmp_path: Path) -> None:
    cfg = config(tmp_path, "wikipedia")
    requests = [
        ExplanationRequest("Paris", "p1", "X"),
        ExplanationRequest("Paris", "p1", "Y"),
        ExplanationRequest("Nope", "p1"),
    ]
    with ExplanationCache(cfg.cache) as cache:
        report = Explainer(cfg, cache).run(requests)
        assert report.total == 2 and report.by_backend == {"wikipedia": 1}
        assert [f.request.entity for f in report.failed] == ["Nope"]
        assert "no backend of the chain wikipedia" in report.failed[0].error
        rows = (
            sqlite3.connect(cfg.cache)
            .execute("SELECT entity, partner, template FROM explanations")
            .fetchall()
        )
    assert rows == [("Paris", None, "-")]


def test_name_backend_is_a_knowledge_free_control_kept_apart_in_the_cache(tmp_path: Path) -> None:
    wiki = explanations_for(make_samples(), config(tmp_path, "wikipedia,name"))
    assert wiki[0] == ("Messi", "Barcelona is a city in Spain.")  # no article for Messi: his name
    names = explanations_for(make_samples(), config(tmp_path, "name"))  # same cache file
    assert names == [("Messi", "Barcelona"), ("Barcelona", "Messi"), ("Zidane", "Paris")]
    assert explanations_for(make_samples(), config(tmp_path, "name"), generate=False) == names
