"""``pgmre predict``: simple JSONL and MNRE inputs, batched; bad lines reported and skipped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.evaluate.inference import predict_dataset
from pgmre.pipeline import MREPipeline

runner = CliRunner()


def _run(*args: str) -> tuple[int, str, list[dict]]:
    result = runner.invoke(app, ["predict", *args])
    out = Path(args[args.index("--out") + 1])
    records = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
    return result.exit_code, result.output, records


def test_simple_jsonl_with_images_and_bad_lines(
    trained_image_run: Path, synthetic_dataset: SyntheticDataset, tmp_path: Path
) -> None:
    sample = load_samples(synthetic_dataset.test)[0]
    (tmp_path / "pics").mkdir()
    shutil.copy(synthetic_dataset.image_dir / (sample.img_id or ""), tmp_path / "pics" / "post.jpg")
    (tmp_path / "pics" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    good = {"text": sample.text, "head": sample.head.name, "tail": sample.tail.name}
    lines = [
        json.dumps({**good, "image": "pics/post.jpg"}),  # 1: image path relative to the input file
        "{not json",  # 2
        json.dumps({"text": "Paris and Paris", "head": "Paris", "tail": "and"}),  # 3: ambiguous
        "",  # blank lines are skipped silently
        json.dumps({**good, "head": "Nobody Here"}),  # 5: absent
        json.dumps({"text": sample.text, "head": sample.head.name}),  # 6: no tail
        json.dumps({**good, "image": "pics/broken.jpg"}),  # 7: not an image
        json.dumps({**good, "image": "pics/missing.jpg"}),  # 8
        json.dumps(
            {**good, "head": {"name": sample.head.name, "pos": [sample.head.start, sample.head.end]}}
        ),  # 9
    ]
    src = tmp_path / "posts.jsonl"
    src.write_text("\n".join(lines) + "\n")
    out = tmp_path / "out" / "pred.jsonl"
    code, output, records = _run(
        "--run", str(trained_image_run), "--input", str(src), "--out", str(out), "--batch-size", "2"
    )
    assert code == 0, output
    assert [r["line"] for r in records] == [1, 9]
    assert records[0]["visual_slots"] == 3 and records[1]["visual_slots"] == 0
    assert all(len(r["top_k"]) == 3 and r["relation"] == r["top_k"][0]["relation"] for r in records)
    for line, why in [
        (2, "not a JSON object"),
        (3, "occurs 2 times"),
        (5, "'Nobody Here' does not occur in the text"),
        (6, "missing field(s): tail"),
        (7, "not a readable image"),
        (8, "cannot read"),
    ]:
        assert f"{src}:{line}: " in output and why in output, (line, why)
    summary = json.loads(output[output.index('{"input"') :].splitlines()[0])
    assert (summary["predicted"], summary["skipped"], summary["format"]) == (2, 6, "simple")


def test_mnre_file_matches_the_pipeline_and_scores(
    trained_caption_run: Path, synthetic_dataset: SyntheticDataset, tmp_path: Path
) -> None:
    lines = synthetic_dataset.test.read_text().splitlines()
    src = tmp_path / "test.txt"
    src.write_text("\n".join([*lines[:5], "{'token': ['x'], 'h': 3}", *lines[5:]]) + "\n")
    out = tmp_path / "pred.jsonl"
    code, output, records = _run(
        "--run", str(trained_caption_run), "--input", str(src), "--out", str(out), "--top-k", "2"
    )
    assert code == 0, output
    assert f"{src}:6: field 'h'" in output
    assert [r["line"] for r in records] == [1, 2, 3, 4, 5, *range(7, len(lines) + 2)]
    samples = load_samples(synthetic_dataset.test)
    assert [r["gold"] for r in records] == [s.relation for s in samples]
    assert [r["img_id"] for r in records] == [s.img_id for s in samples]

    pipeline = MREPipeline.from_run(trained_caption_run)
    model = pipeline.load_model(trained_caption_run / "best")
    expected = predict_dataset(model, pipeline.dataset(samples), pipeline.collate).probs
    assert [r["relation"] for r in records] == [pipeline.vocab.decode(int(i)) for i in expected.argmax(1)]
    assert np.allclose([r["probability"] for r in records], expected.max(1), atol=1e-5)
    assert all(r["visual_slots"] == 2 for r in records)  # both caption files know every test image

    # The output is what `pgmre score` reads (the bad line held no sample, so gold and predictions align).
    scored = runner.invoke(app, ["score", "--gold", str(synthetic_dataset.test), "--pred", str(out)])
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.output)["n"] == len(samples)


def test_nothing_predictable_exits_2(trained_caption_run: Path, tmp_path: Path) -> None:
    src = tmp_path / "bad.jsonl"
    src.write_text(json.dumps({"text": "a b", "head": "c", "tail": "b"}) + "\n")
    code, output, records = _run(
        "--run", str(trained_caption_run), "--input", str(src), "--out", str(tmp_path / "o.jsonl")
    )
    assert code == 2 and "no line could be predicted" in output and records == []
    code, output, _ = _run("--run", str(tmp_path), "--input", str(src), "--out", str(tmp_path / "o.jsonl"))
    assert code == 2 and "not a pgmre run directory" in output
    code, output, _ = _run(
        "--run",
        str(trained_caption_run),
        "--input",
        str(tmp_path / "absent.jsonl"),
        "--out",
        str(tmp_path / "o.jsonl"),
    )
    assert code == 2 and "cannot read" in output


def test_a_line_without_explanations_is_skipped_without_asking_the_backends_again(
    trained_caption_run: Path,
    synthetic_dataset: SyntheticDataset,
    tmp_path: Path,
    explanation_lookups: list[tuple[int, bool]],
) -> None:
    """The batch asks the backends once; its lines, retried one by one to find the bad one, read the cache."""
    posts = [
        {"text": s.text, "head": s.head.name, "tail": s.tail.name}
        for s in load_samples(synthetic_dataset.test)[:3]
    ]
    posts.insert(1, {"text": "Jonas Berg joined Acme Widgets", "head": "Jonas Berg", "tail": "Acme Widgets"})
    src = tmp_path / "posts.jsonl"
    src.write_text("".join(json.dumps(p) + "\n" for p in posts))
    code, output, records = _run(
        "--run", str(trained_caption_run), "--input", str(src), "--out", str(tmp_path / "o.jsonl")
    )
    assert code == 0, output
    assert [r["line"] for r in records] == [1, 3, 4]
    assert "posts.jsonl:2: no entity explanation" in output
    assert explanation_lookups == [(4, True), (1, False), (1, False), (1, False), (1, False)]
