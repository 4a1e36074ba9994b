"""``pgmre predict --resume``: a stopped job keeps what it predicted, and a resumed one finishes it.

A job is stopped for real: ``on_error`` (the public callback) raises ``KeyboardInterrupt`` on a chosen
bad line, as a Ctrl-C would; at the CLI, the run's wikipedia summaries file is gone when a batch first
needs it (``BackendUnavailable``). Explanations come from an OpenAI-compatible server on 127.0.0.1
(``FakeOpenAI``), so the lines a resumed job predicts are counted at the server. Progress is saved
after every batch here (``save_every_s=0``) unless a test is about the throttle.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import safetensors.torch
import yaml
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.serve import files
from pgmre.serve.files import PredictSummary, ResumeError, partial_paths, predict_file
from pgmre.serve.predictor import Predictor
from test_explain_openai import FakeOpenAI
from test_predict_mixed_policy import openai_run, prompts_at

NAMES = [("Jonas Berg", "Acme Widgets"), ("Mara Lind", "Summit Bank"), ("Olle Falk", "Nord Rail"),
         ("Ines Mora", "Delta Foods"), ("Karl Ek", "Blue Harbor"), ("Sara Holm", "Pine Studio"),
         ("Emil Dahl", "Iron Works"), ("Lena Vik", "Star Radio")]  # fmt: skip
POSTS = {i: {"text": f"{h} joined {t} in Oslo", "head": h, "tail": t} for i, (h, t) in enumerate(NAMES, 1)}
# line -> content; batch size 2 gives the batches [1, 2] [3, 5] [6, 8] [9, 11]
LINES = {
    1: json.dumps(POSTS[1]),
    2: json.dumps(POSTS[2]),
    3: json.dumps(POSTS[3]),
    4: "{not json",
    5: json.dumps(POSTS[4]),
    6: json.dumps(POSTS[5]),
    7: json.dumps({"text": "Paris and Paris", "head": "Paris", "tail": "and"}),  # ambiguous: reported
    8: json.dumps(POSTS[6]),
    9: json.dumps(POSTS[7]),
    10: "",
    11: json.dumps(POSTS[8]),
}
POST_OF_LINE = {1: 1, 2: 2, 3: 3, 5: 4, 6: 5, 8: 6, 9: 7, 11: 8}


def asked(lines: list[int]) -> Counter[tuple[str, str]]:
    """The (post, entity) completions predicting ``lines`` needs, once each."""
    posts = [POSTS[POST_OF_LINE[n]] for n in lines]
    return Counter({(p["text"], p[role]): 1 for p in posts for role in ("head", "tail")})


class Job:
    """The input file, a copy of the caption run explained by ``FakeOpenAI``, and its output path."""

    def __init__(self, root: Path, trained_run: Path, server: FakeOpenAI) -> None:
        self.server = server
        self.run = openai_run(trained_run, root, server.url)
        self.cache = Path(yaml.safe_load((self.run / "config.yaml").read_text())["explain"]["cache"])
        self.src = root / "posts.jsonl"
        self.src.write_text("\n".join(LINES.values()) + "\n")
        self.out = root / "out" / "pred.jsonl"
        self.partial, self.sidecar = partial_paths(self.out)
        self.predictor = Predictor.from_pretrained(self.run)

    def forget(self) -> None:
        """A fresh explanation cache and request log: the next job asks the server for all it predicts."""
        for path in self.cache.parent.glob(self.cache.name + "*"):
            path.unlink()
        self.server.bodies.clear()

    def predict(
        self, out: Path | None = None, reported: list[str] | None = None, **kw: Any
    ) -> PredictSummary:
        on_error = reported.append if reported is not None else None
        kw = {"predictor": self.predictor, "progress": False, "save_every_s": 0, "batch_size": 2, **kw}
        return predict_file(input_path=self.src, output_path=out or self.out, on_error=on_error, **kw)

    def reference(self) -> tuple[bytes, PredictSummary]:
        """What an uninterrupted job writes (to another file), then a fresh cache."""
        summary = self.predict(self.out.parent / "reference.jsonl")
        data = (self.out.parent / "reference.jsonl").read_bytes()
        self.forget()
        return data, summary

    def interrupt(self, at_line: int = 7, kept: int = 4, **kw: Any) -> None:
        """Run until line ``at_line`` is reported, where a Ctrl-C stops the job with ``kept`` lines saved."""
        where = f"{self.src}:{at_line}: "

        def stop(message: str) -> None:
            if message.startswith(where):
                raise KeyboardInterrupt

        kw = {"predictor": self.predictor, "progress": False, "save_every_s": 0, **kw}
        with pytest.raises(KeyboardInterrupt) as stopped:
            predict_file(input_path=self.src, output_path=self.out, batch_size=2, on_error=stop, **kw)
        assert f"{kept} predicted lines are kept in {self.partial}" in "\n".join(stopped.value.__notes__)

    def state(self) -> tuple[bytes, bytes]:
        return self.partial.read_bytes(), self.sidecar.read_bytes()


@pytest.fixture
def job(trained_caption_run: Path, tmp_path: Path) -> Iterator[Job]:
    with FakeOpenAI() as server:
        yield Job(tmp_path, trained_caption_run, server)


def test_an_interrupted_job_resumes_to_the_uninterrupted_file(job: Job) -> None:
    reference, whole = job.reference()
    assert (whole.predicted, whole.skipped) == (8, 2)
    job.out.write_text("an earlier output\n")

    job.interrupt()
    assert job.out.read_text() == "an earlier output\n"  # never half-overwritten
    kept = [json.loads(x)["line"] for x in job.partial.read_text().splitlines()]
    assert kept == [1, 2, 3, 5]  # the batches saved before line 7 stopped the job
    progress = json.loads(job.sidecar.read_text())
    assert progress["done_through_line"] == 5 and (progress["predicted"], progress["skipped"]) == (4, 1)
    assert progress["input"] == str(job.src.resolve()) and progress["run"] == str(job.run.resolve())
    assert (progress["checkpoint"], progress["top_k"], progress["version"]) == ("best", 3, 3)
    assert progress["weights"] == job.predictor.weights_fingerprint is not None
    assert progress["precision"] == job.predictor.precision
    assert progress["batch_size"] == 2
    assert prompts_at(job.server) == asked([1, 2, 3, 5])  # line 6 waited in the unfinished batch

    job.forget()
    reported: list[str] = []
    summary = job.predict(reported=reported, resume=True)
    assert job.out.read_bytes() == reference
    assert (summary.predicted, summary.skipped, summary.errors) == (8, 2, whole.errors)
    # nothing done before is predicted or reported again; line 7 (after the last save) is, once
    assert prompts_at(job.server) == asked([6, 8, 9, 11])
    assert reported == [whole.errors[1]] and reported[0].startswith(f"{job.src}:7: ")
    assert not job.partial.exists() and not job.sidecar.exists()


def test_a_half_written_tail_and_an_unsaved_batch_are_dropped(job: Job) -> None:
    reference, _ = job.reference()
    job.interrupt()
    unsaved = reference.splitlines(keepends=True)[4]  # line 6's record, as if written after the last save
    assert json.loads(unsaved)["line"] == 6
    with job.partial.open("ab") as handle:
        handle.write(unsaved + b'{"line": 8, "relation": "/per/')
    summary = job.predict(resume=True)
    assert job.out.read_bytes() == reference and (summary.predicted, summary.skipped) == (8, 2)


def test_a_damaged_record_in_the_kept_range_is_refused(job: Job) -> None:
    job.interrupt()
    records = job.partial.read_text().splitlines(keepends=True)
    job.partial.write_text(records[0] + '{"line": 2, "relat\n' + "".join(records[2:]))
    before = job.state()
    with pytest.raises(
        ResumeError, match=rf"^{job.partial}:2: damaged prediction record; delete .*partial\*"
    ):
        job.predict(resume=True)
    assert job.state() == before


def test_progress_of_another_job_is_refused_and_kept(job: Job) -> None:
    job.interrupt()
    before = job.state()
    sidecar = str(job.sidecar)
    with pytest.raises(ResumeError, match=r"top_k 3, now 2") as caught:
        job.predict(resume=True, top_k=2)
    assert str(caught.value).startswith(f"{sidecar}: the interrupted run does not match")
    other = Predictor.from_pretrained(job.run, "last")
    with pytest.raises(ResumeError, match=r"run .*/best, now .*/last"):
        job.predict(predictor=other, resume=True)
    job.src.write_text(job.src.read_text().replace("Oslo", "Bergen"))
    with pytest.raises(ResumeError, match=r"had sha256 \w+, .* has \w+") as caught:
        job.predict(resume=True)
    assert str(caught.value).startswith(sidecar)
    assert job.state() == before

    job.sidecar.write_text('{"version": 3, "input": ')
    with pytest.raises(ResumeError, match=rf"^{sidecar}: damaged progress file .*delete .*partial\*"):
        job.predict(resume=True)
    job.sidecar.write_bytes(before[1].replace(b'"version": 3', b'"version": 2'))  # an older format
    with pytest.raises(ResumeError, match=rf"^{sidecar}: .* another pgmre \(format 2, this one reads 3\)"):
        job.predict(resume=True)
    assert job.partial.read_bytes() == before[0]


def test_progress_of_other_weights_or_precision_is_refused(job: Job) -> None:
    job.interrupt()
    before = job.state()
    sidecar = str(job.sidecar)
    precision = job.predictor.precision
    job.predictor.precision = "bf16" if precision == "fp32" else "fp32"
    with pytest.raises(ResumeError, match=rf"precision {precision}, now {job.predictor.precision}"):
        job.predict(resume=True)
    job.predictor.precision = precision

    weights = job.run / "best" / "model.safetensors"  # re-trained: every tensor changes, same size
    tensors = safetensors.torch.load_file(weights)
    safetensors.torch.save_file(
        {k: v + 1 if v.is_floating_point() else v for k, v in tensors.items()}, weights
    )
    retrained = Predictor.from_pretrained(job.run)
    with pytest.raises(ResumeError, match=r"the checkpoint's files changed since") as caught:
        job.predict(predictor=retrained, resume=True)
    assert str(caught.value).startswith(f"{sidecar}: the interrupted run does not match")
    assert job.state() == before


def test_another_batch_size_resumes_with_a_warning(job: Job, caplog: pytest.LogCaptureFixture) -> None:
    reference, whole = job.reference()
    job.interrupt()
    job.forget()
    with caplog.at_level(logging.WARNING, logger="pgmre.serve.files"):
        summary = job.predict(resume=True, batch_size=3)
    [warning] = [r.getMessage() for r in caplog.records if r.name == "pgmre.serve.files"]
    assert warning.startswith(f"{job.sidecar}: resuming with batch size 3, the interrupted run used 2")
    assert (summary.predicted, summary.skipped, summary.errors) == (8, 2, whole.errors)
    got = [json.loads(x) for x in job.out.read_text().splitlines()]
    want = [json.loads(x) for x in reference.decode().splitlines()]
    assert [(r["line"], r["relation"]) for r in got] == [(r["line"], r["relation"]) for r in want]
    assert prompts_at(job.server) == asked([6, 8, 9, 11])


def test_without_resume_leftover_progress_is_refused_and_nothing_deleted(job: Job) -> None:
    job.interrupt()
    before = job.state()
    job.forget()
    with pytest.raises(
        ResumeError, match=r"holds 4 predicted lines of an interrupted run .*pass --resume .*partial\*"
    ):
        job.predict()
    assert job.state() == before and not job.out.exists() and not job.server.bodies


def test_resume_without_progress_starts_from_the_first_line(job: Job) -> None:
    reference, whole = job.reference()
    reported: list[str] = []
    summary = job.predict(reported=reported, resume=True)
    assert job.out.read_bytes() == reference and summary.errors == whole.errors == reported
    assert prompts_at(job.server) == asked(list(POST_OF_LINE))


def test_progress_is_saved_after_the_first_batch_then_every_few_seconds(
    job: Job, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference, _ = job.reference()
    monkeypatch.setattr(files, "SAVE_EVERY_S", 3600.0)  # the default interval, never reached here
    job.interrupt(kept=2, save_every_s=None)
    assert json.loads(job.sidecar.read_text())["done_through_line"] == 2
    assert len(job.partial.read_text().splitlines()) == 4  # batch [3, 5] written, not counted
    summary = job.predict(resume=True, save_every_s=None)
    assert job.out.read_bytes() == reference and (summary.predicted, summary.skipped) == (8, 2)


def test_the_progress_is_gone_before_the_output_is_renamed(job: Job, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between the two leaves a partial file without progress: never a sidecar counting lines
    of a file already renamed. The next run overwrites that partial file, with or without --resume."""
    reference, _ = job.reference()
    replace = os.replace

    def crash(src: Any, dst: Any) -> None:
        if Path(src) == job.partial:
            assert not job.sidecar.exists()
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        job.predict()
    monkeypatch.undo()
    assert not job.sidecar.exists() and not job.out.exists()

    for resume in (False, True):
        job.forget()
        job.partial.write_text('{"line": 1, "relation": "orphan"}\n')  # as a crash there leaves it
        job.predict(resume=resume)
        assert job.out.read_bytes() == reference and not job.partial.exists()
        assert prompts_at(job.server) == asked(list(POST_OF_LINE))  # from the first line


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_still_cleans_up(job: Job) -> None:
    """Closing the partial file fails again (its buffer cannot be flushed): the cleanup still runs."""
    job.out.parent.mkdir(parents=True)
    job.partial.symlink_to("/dev/full")
    with pytest.raises(OSError) as caught:
        job.predict()
    assert caught.value.errno == errno.ENOSPC
    assert not job.partial.is_symlink() and not job.sidecar.exists()  # nothing saved: nothing kept


def test_a_resumed_job_shows_its_progress_from_the_lines_already_done(
    job: Job, caplog: pytest.LogCaptureFixture
) -> None:
    job.interrupt()
    with caplog.at_level(logging.INFO, logger="pgmre.progress"):
        job.predict(resume=True, progress=True)
    logged = [r.getMessage() for r in caplog.records if r.name == "pgmre.progress"]
    assert logged[0].startswith("predict: 5/10 ") and logged[-1].startswith("predict: 10/10 ")


def test_a_resumed_job_stopped_before_its_first_save_keeps_the_earlier_progress(job: Job) -> None:
    reference, whole = job.reference()
    job.interrupt()
    before = job.state()
    job.interrupt(resume=True)  # stopped at line 7 again: batch [6, 8] never flushed
    assert job.state() == before
    summary = job.predict(resume=True)
    assert job.out.read_bytes() == reference
    assert (summary.predicted, summary.skipped, summary.errors) == (8, 2, whole.errors)


def test_a_file_of_records_and_posts_resumes_to_the_uninterrupted_file(
    job: Job, synthetic_dataset: SyntheticDataset
) -> None:
    records = [line for line in synthetic_dataset.test.read_text().splitlines() if line.strip()][:3]
    mixed = [records[0], LINES[1], records[1], "{not json", LINES[2], records[2], LINES[7], LINES[3]]
    job.src.write_text("\n".join(mixed) + "\n")
    reference, whole = job.reference()
    assert (whole.predicted, whole.skipped) == (6, 2)
    assert [json.loads(x).get("img_id") is not None for x in reference.splitlines()] == [
        True, False, True, False, True, False
    ]  # fmt: skip
    job.interrupt()  # at line 7: batches [1, 2] [3, 5] saved
    summary = job.predict(resume=True)
    assert job.out.read_bytes() == reference
    assert (summary.predicted, summary.skipped, summary.errors) == (6, 2, whole.errors)


# ---------------------------------------------------------------- the CLI


def test_cli_keeps_the_lines_of_a_stopped_job_and_resumes_it(
    trained_caption_run: Path,
    synthetic_dataset: SyntheticDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The run's wikipedia summaries are gone when the first line without explanations comes."""
    monkeypatch.setattr(files, "SAVE_EVERY_S", 0.0)
    run = shutil.copytree(trained_caption_run, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    summaries = tmp_path / "summaries.json"
    shutil.copy(config["explain"]["wikipedia_summaries"], summaries)
    config["explain"] |= {"wikipedia_summaries": str(summaries), "cache": str(tmp_path / "cache.sqlite")}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    samples = load_samples(synthetic_dataset.test)[:6]
    posts = [{"text": s.text, "head": s.head.name, "tail": s.tail.name} for s in samples]
    given = {"explanations": {"head": "a person", "tail": "a place"}}
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps({**p, **given} if i < 4 else p) + "\n" for i, p in enumerate(posts)))
    out, reference = tmp_path / "pred.jsonl", tmp_path / "reference.jsonl"
    partial, sidecar = partial_paths(out)
    runner = CliRunner()

    def predict(*extra: str, to: Path = out) -> tuple[int, str]:
        args = ["predict", "--run", str(run), "--input", str(src), "--out", str(to), "--batch-size", "2"]
        result = runner.invoke(app, [*args, *extra])
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    code, output = predict(to=reference)
    assert code == 0, output
    summaries.rename(tmp_path / "away.json")
    code, output = predict()
    assert code == 2 and "cannot read the wikipedia summaries" in output, output
    assert f"4 predicted lines are kept in {partial}: rerun with --resume to continue" in output
    assert not out.exists() and len(partial.read_text().splitlines()) == 4

    code, output = predict()  # refused before the run loads
    assert code == 2 and f"{sidecar}: holds 4 predicted lines of an interrupted run" in output
    assert "--resume" in output and len(partial.read_text().splitlines()) == 4

    (tmp_path / "away.json").rename(summaries)
    code, output = predict("--resume")
    assert code == 0, output
    assert out.read_bytes() == reference.read_bytes() and not partial.exists() and not sidecar.exists()
    summary = json.loads(output[output.index('{"input"') :].splitlines()[0])
    assert (summary["predicted"], summary["skipped"]) == (6, 0)

    code, output = predict("--resume", "--top-k", "2", to=tmp_path / "fresh.jsonl")
    assert code == 0 and "--resume: no interrupted run" in output and "from the first line" in output


@pytest.mark.parametrize("clash", ["input", "directory", "sidecar directory"])
def test_cli_checks_the_partial_paths_before_the_run_loads(tmp_path: Path, clash: str) -> None:
    out = tmp_path / "pred.jsonl"
    partial, sidecar = partial_paths(out)
    src = tmp_path / "posts.jsonl"
    if clash == "input":
        src = partial  # --input X.jsonl.partial --out X.jsonl
    else:
        (partial if clash == "directory" else sidecar).mkdir()
    src.write_text(LINES[1] + "\n")
    args = ["predict", "--run", str(tmp_path / "no-run"), "--input", str(src), "--out", str(out)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    named = partial if clash != "sidecar directory" else sidecar
    why = "is the input" if clash == "input" else "is a directory"
    assert f"{named}: {why}" in result.output and "no-run" not in result.output


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_cli_reports_a_full_disk(job: Job) -> None:
    job.out.parent.mkdir(parents=True)
    job.partial.symlink_to("/dev/full")
    args = ["predict", "--run", str(job.run), "--input", str(job.src), "--out", str(job.out)]
    result = CliRunner().invoke(app, [*args, "--batch-size", "2"])
    assert result.exit_code == 2, (result.output, result.exception)
    assert "No space left on device" in result.output and f"nothing was written to {job.out}" in result.output
