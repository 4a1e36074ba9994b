"""``pgmre explain``: run, SIGKILL mid-run and resume, stats, export, import."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import yaml
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.config import load_config
from pgmre.data.mnre import write_samples
from pgmre.data.types import Entity, Sample
from pgmre.explain import Explainer, ExplanationCache, requests_for
from test_explain_openai import FakeOpenAI, expected_text

ROW = "key, backend, model, template, settings, entity, sentence_sha1, partner, explanation, tokens"


def write_posts(path: Path, n: int) -> Path:
    samples = []
    for i in range(n):
        words = ("ok-h" + str(i), "meets", "ok-t" + str(i), "in", "town", str(i))
        samples.append(Sample(words, Entity(words[0], 0, 1), Entity(words[2], 2, 3), f"{i}.jpg", "None"))
    write_samples(samples, path)
    return path


def write_config(path: Path, url: str, cache: Path, **openai: object) -> Path:
    settings = {"base_url": url, "model": "fake-1", "concurrency": 2, "timeout_s": 5.0, **openai}
    path.write_text(
        yaml.safe_dump({"explain": {"backend": "openai", "cache": str(cache), "openai": settings}})
    )
    return path


def rows(cache: Path) -> set[tuple]:
    with sqlite3.connect(cache) as db:
        return set(db.execute(f"SELECT {ROW} FROM explanations"))


def count(cache: Path) -> int:
    try:
        with sqlite3.connect(cache, timeout=5) as db:
            return int(db.execute("SELECT COUNT(*) FROM explanations").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def pgmre(*args: str) -> subprocess.Popen[str]:
    code = "from pgmre.cli import main; main()"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def test_sigkill_mid_run_then_resume_equals_uninterrupted(tmp_path: Path) -> None:
    data = write_posts(tmp_path / "posts.txt", 30)  # 60 unique requests, chunks of 8, ~0.06 s a round
    killed_cache, reference_cache = tmp_path / "killed.sqlite", tmp_path / "reference.sqlite"
    with FakeOpenAI(lag_s=0.03) as server:
        cfg_path = write_config(tmp_path / "c.yaml", server.url, killed_cache)
        proc = pgmre("explain", "run", "--data", str(data), "--config", str(cfg_path))
        deadline = time.monotonic() + 60
        while count(killed_cache) < 8 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        partial = count(killed_cache)
        assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
        assert 8 <= partial < 60  # killed mid-run, with committed chunks
        asked_before = sum(len(t) for t in server.attempts.values())

        resumed = pgmre("explain", "run", "--data", str(data), "--config", str(cfg_path))
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert "explained 60/60" in out and f"({partial} from the cache" in out
        # only what was not committed was asked again (a chunk in flight at the kill may be asked twice)
        asked_after = sum(len(t) for t in server.attempts.values()) - asked_before
        assert asked_after <= 60 - partial + 8

        reference = load_config(write_config(tmp_path / "r.yaml", server.url, reference_cache)).explain
        from pgmre.data.mnre import load_samples

        with ExplanationCache(reference.cache) as cache:
            Explainer(reference, cache).run(requests_for(load_samples(data)))
    killed_rows = rows(killed_cache)
    assert len(killed_rows) == 60 and killed_rows == rows(reference_cache)
    assert {r[5]: r[8] for r in killed_rows}["ok-h3"] == expected_text("ok-h3")


def test_run_reports_failures_and_retries_them(tmp_path: Path) -> None:
    data = tmp_path / "posts.txt"
    write_samples(
        [Sample(("dead-1", "and", "ok-2"), Entity("dead-1", 0, 1), Entity("ok-2", 2, 3), "x.jpg", "None")],
        data,
    )
    cache = tmp_path / "c.sqlite"
    runner = CliRunner()
    with FakeOpenAI() as server:
        cfg = write_config(tmp_path / "c.yaml", server.url, cache, max_retries=1, retry_base_s=0.01)
        args = ["explain", "run", "--data", str(data), "--config", str(cfg)]
        first = runner.invoke(app, args)
        assert first.exit_code == 1
        assert (
            "explained 1/2" in first.output
            and "1 failed" in first.output
            and "'dead-1': gave up" in first.output
        )
        second = runner.invoke(app, args)
        assert second.exit_code == 1 and "(1 from the cache, 0 new)" in second.output
    assert len(server.attempts["dead-1"]) == 4 and len(server.attempts["ok-2"]) == 1

    stats = runner.invoke(app, ["explain", "stats", "--cache", str(cache), "--json"])
    summary = json.loads(stats.output)
    assert summary["rows"] == 1 and summary["groups"][0]["backend"] == "openai"
    assert summary["failures"] == [
        {"backend": "openai", "model": "fake-1", "template": "v1", "items": 1, "attempts": 2}
    ]
    text = runner.invoke(app, ["explain", "stats", "--cache", str(cache)])
    assert text.exit_code == 0 and "failures: 1 items" in text.output


def test_export_import_commands(tmp_path: Path) -> None:
    data = write_posts(tmp_path / "posts.txt", 3)
    summaries = tmp_path / "summaries.json"
    summaries.write_text(
        json.dumps({f"ok-h{i}": {"extract": f"Head {i} is a test entity."} for i in range(3)})
    )
    runner = CliRunner()
    base = ["--set", f"explain.wikipedia_summaries={summaries}"]
    ran = runner.invoke(
        app,
        [
            "explain",
            "run",
            "-d",
            str(data),
            "--backend",
            "wikipedia",
            "--cache",
            str(tmp_path / "a.sqlite"),
            *base,
        ],
    )
    assert ran.exit_code == 1 and "explained 3/6" in ran.output  # the tails are not in the summaries
    exported = runner.invoke(
        app, ["explain", "export", str(tmp_path / "x.jsonl.gz"), "--cache", str(tmp_path / "a.sqlite")]
    )
    assert exported.exit_code == 0 and "wrote 3 explanations" in exported.output
    imported = runner.invoke(
        app, ["explain", "import", str(tmp_path / "x.jsonl.gz"), "--cache", str(tmp_path / "b.sqlite")]
    )
    assert (
        imported.exit_code == 0 and "read 3 explanations" in imported.output and "added 3" in imported.output
    )
    assert rows(tmp_path / "a.sqlite") == rows(tmp_path / "b.sqlite")


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.txt"
    bad.write_text("{'token': ['a'], 'h': {'name': 'a', 'pos': [0, 1]}}\n")
    result = runner.invoke(app, ["explain", "run", "-d", str(bad), "--cache", str(tmp_path / "c.sqlite")])
    assert result.exit_code == 2 and "bad.txt" in result.output and ":1" in result.output
    result = runner.invoke(app, ["explain", "run", "-d", str(bad), "--backend", "gpt9"])
    assert result.exit_code == 2 and "unknown explanation backend 'gpt9'" in result.output
    result = runner.invoke(app, ["explain", "stats", "--cache", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 2 and "no such cache" in result.output
    (tmp_path / "bad.jsonl").write_text('{"entity": 3}\n')
    result = runner.invoke(
        app, ["explain", "import", str(tmp_path / "bad.jsonl"), "--cache", str(tmp_path / "c.sqlite")]
    )
    assert result.exit_code == 2 and "bad.jsonl:1: field 'entity' must be a str" in result.output
