"""``pgmre data check|subsets|synth`` and ``pgmre score`` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset

runner = CliRunner()


def _bad_file(tmp_path: Path, synthetic_dataset: SyntheticDataset) -> Path:
    lines = synthetic_dataset.dev.read_text().splitlines()
    lines[2] = lines[2].replace("'relation': '", "'relation': '/made/up")
    lines[4] = "{'token': "
    path = tmp_path / "bad.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_check_valid_file(synthetic_dataset: SyntheticDataset) -> None:
    result = runner.invoke(app, ["data", "check", str(synthetic_dataset.train), "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["samples"] == 48 and summary["format"] == "mnre"
    assert summary["images"] > 0 and summary["entities"] > 0 and summary["errors"] == {}
    assert sum(summary["relations"].values()) == 48

    text = runner.invoke(app, ["data", "check", str(synthetic_dataset.dev)])
    assert text.exit_code == 0 and "samples:    16" in text.stdout


def test_check_invalid_file_strict_and_lenient(tmp_path: Path, synthetic_dataset: SyntheticDataset) -> None:
    bad = _bad_file(tmp_path, synthetic_dataset)
    strict = runner.invoke(app, ["data", "check", str(bad)])
    assert strict.exit_code == 2
    assert f"{bad}:3: field 'relation'" in strict.stderr and "unknown_relation" in strict.stderr

    lenient = runner.invoke(app, ["data", "check", str(bad), "--lenient", "--json"])
    assert lenient.exit_code == 2
    summary = json.loads(lenient.stdout)
    assert summary["samples"] == 14
    assert summary["errors"] == {"unknown_relation": 1, "unparseable": 1}
    assert f"{bad}:5:" in lenient.stderr


def test_check_with_custom_rel2id_and_missing_file(
    tmp_path: Path, synthetic_dataset: SyntheticDataset
) -> None:
    rel2id = tmp_path / "rel2id.json"
    rel2id.write_text(json.dumps({"None": 0, "/per/per/peer": 1}))
    result = runner.invoke(app, ["data", "check", str(synthetic_dataset.train), "--rel2id", str(rel2id)])
    assert result.exit_code == 2 and "unknown relation" in result.stderr
    missing = runner.invoke(app, ["data", "check", str(tmp_path / "nope.txt")])
    assert missing.exit_code == 2 and "no such file" in missing.stderr


def test_subsets(synthetic_dataset: SyntheticDataset) -> None:
    args = ["data", "subsets", "--train", str(synthetic_dataset.train), "--eval", str(synthetic_dataset.test)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    counts = json.loads(result.stdout)
    assert set(counts) == {"n", "unseen", "untokenizable"}
    assert counts["n"] == 16 and counts["unseen"] > 0


def test_synth(tmp_path: Path) -> None:
    out = tmp_path / "synth"
    result = runner.invoke(
        app, ["data", "synth", "--out", str(out), "--train", "6", "--dev", "2", "--test", "3"]
    )
    assert result.exit_code == 0, result.output
    assert [len(load_samples(out / f"{s}.txt")) for s in ("train", "dev", "test")] == [6, 2, 3]
    assert (out / "captions_a.json").is_file() and any((out / "images").iterdir())
    used = len({s.img_id for split in ("train", "dev", "test") for s in load_samples(out / f"{split}.txt")})
    assert f"and {used} images to" in result.output
    smaller = runner.invoke(
        app, ["data", "synth", "--out", str(out), "--train", "2", "--dev", "1", "--test", "1"]
    )
    assert smaller.exit_code == 0 and "images to" in smaller.output
    n_smaller = len(
        {s.img_id for split in ("train", "dev", "test") for s in load_samples(out / f"{split}.txt")}
    )
    assert n_smaller < used and f"and {n_smaller} images to" in smaller.output  # not the earlier run's


def _write_pred(path: Path, labels: list[str]) -> Path:
    path.write_text("".join(json.dumps({"relation": label}) + "\n" for label in labels))
    return path


def test_score(tmp_path: Path, synthetic_dataset: SyntheticDataset) -> None:
    gold = load_samples(synthetic_dataset.test)
    labels = [s.relation or "" for s in gold]
    labels[0] = "None" if labels[0] != "None" else "/per/per/peer"
    pred = _write_pred(tmp_path / "pred.jsonl", labels)
    out = tmp_path / "reports" / "report.json"
    args = ["score", "--gold", str(synthetic_dataset.test), "--pred", str(pred), "--out", str(out)]
    result = runner.invoke(app, [*args, "--train", str(synthetic_dataset.train)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert json.loads(out.read_text()) == report
    expected = {
        "n",
        "accuracy",
        "precision",
        "recall",
        "f1",
        "macro_f1",
        "per_relation",
        "confusion",
        "subsets",
    }
    assert set(report) == expected
    assert report["n"] == 16 and report["accuracy"] == 93.75
    assert set(report["subsets"]) == {"unseen", "untokenizable"}

    plain = runner.invoke(app, args[:5])
    assert plain.exit_code == 0 and "subsets" not in json.loads(plain.stdout)


def test_score_errors(tmp_path: Path, synthetic_dataset: SyntheticDataset) -> None:
    gold = str(synthetic_dataset.test)
    short = _write_pred(tmp_path / "short.jsonl", ["None"] * 15)
    result = runner.invoke(app, ["score", "--gold", gold, "--pred", str(short)])
    assert result.exit_code == 2 and "15 predictions but" in result.stderr

    unknown = _write_pred(tmp_path / "unknown.jsonl", ["None"] * 15 + ["/per/per/friend"])
    result = runner.invoke(app, ["score", "--gold", gold, "--pred", str(unknown)])
    assert (
        result.exit_code == 2 and "unknown.jsonl:16" in result.stderr and "/per/per/friend" in result.stderr
    )


def test_score_against_a_baseline_adds_a_paired_bootstrap(
    tmp_path: Path, synthetic_dataset: SyntheticDataset
) -> None:
    gold_labels = [s.relation or "" for s in load_samples(synthetic_dataset.test)]
    perfect = _write_pred(tmp_path / "perfect.jsonl", gold_labels)
    all_none = _write_pred(tmp_path / "none.jsonl", ["None"] * len(gold_labels))
    args = [
        "score",
        "--gold",
        str(synthetic_dataset.test),
        "--pred",
        str(perfect),
        "--against",
        str(all_none),
    ]
    result = runner.invoke(app, [*args, "--resamples", "200"])
    assert result.exit_code == 0, result.output
    against = json.loads(result.stdout)["against"]
    assert against["baseline"] == str(all_none) and against["resamples"] == 200
    assert against["f1_a"] == 0.0 and against["f1_b"] == 100.0 and against["p_b_not_better"] == 0.0

    short = _write_pred(tmp_path / "short.jsonl", ["None"] * 3)
    result = runner.invoke(app, [*args[:5], "--against", str(short)])
    assert result.exit_code == 2 and "predictions" in result.stderr
