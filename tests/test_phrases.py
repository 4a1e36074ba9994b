"""Per-sample phrases (``text.phrases``): the reader, the model's phrase path and the published protocol."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch

from pgmre.config import PUBLISHED_PROTOCOL_NOTE, config_from_dict
from pgmre.data.mnre import load_samples
from pgmre.data.phrases import PhraseFileError, load_phrases, phrases_for
from pgmre.data.synthetic import SyntheticDataset
from pgmre.data.types import Entity, Sample
from pgmre.model import PGMRE
from pgmre.train.run import run_training
from test_model_pgmre import NUM_LABELS, VISUAL_DIM, encoder_dir, make_batch, make_config  # noqa: F401
from test_train import tiny_bert, tiny_config  # noqa: F401


def sample(line: int, img_id: str | None = None) -> Sample:
    return Sample(("a", "b"), Entity("a", 0, 1), Entity("b", 1, 2), img_id, "None", ("x_train.txt", line))


def test_phrases_are_found_by_line_or_by_image(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"0": "Obama Berlin person location", "post9.jpg": "by image"}))
    table = load_phrases(path)
    assert table.lookup(sample(1)) == "Obama Berlin person location"  # line 1 of the file is key "0"
    assert table.lookup(sample(5, "post9.jpg")) == "by image"
    assert table.lookup(sample(5, "post9")) == "by image"
    assert table.lookup(sample(7)) is None
    assert phrases_for([sample(1), sample(7)], str(path), "train") == ["Obama Berlin person location", ""]


def test_bad_phrase_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "list.json").write_text("[1, 2]")
    with pytest.raises(PhraseFileError, match=r"list\.json: expected an object"):
        load_phrases(tmp_path / "list.json")
    (tmp_path / "num.json").write_text('{"0": 5}')
    with pytest.raises(PhraseFileError, match=r"num\.json: key '0': expected a phrase string"):
        load_phrases(tmp_path / "num.json")
    (tmp_path / "broken.json").write_text('{"0": ')
    with pytest.raises(PhraseFileError, match=r"broken\.json: not a JSON phrases file"):
        load_phrases(tmp_path / "broken.json")
    with pytest.raises(PhraseFileError, match=r"text\.phrases: .*absent"):
        phrases_for([sample(1)], str(tmp_path / "absent_{split}.json"), "train")
    for split in ("train", "dev"):
        (tmp_path / f"p_{split}.json").write_text('{"0": "x"}')
    with pytest.raises(PhraseFileError, match="repeat across splits"):
        phrases_for([sample(1)], str(tmp_path / "p_{split}.json"), None)


def phrase_batch(seed: int = 0) -> dict[str, torch.Tensor]:
    batch = make_batch(seed)
    g = torch.Generator().manual_seed(seed + 1)
    n = batch["input_ids"].shape[0]
    batch["phrase_input_ids"] = torch.randint(5, 64, (n, 5), generator=g)
    mask = torch.ones(n, 5, dtype=torch.long)
    mask[:, 3:] = 0
    batch["phrase_attention_mask"] = mask
    return batch


@pytest.mark.parametrize("variant", ["text-only", "base", "full"])
def test_the_phrase_reaches_the_prediction_and_padding_does_not(encoder_dir: Path, variant: str) -> None:  # noqa: F811
    torch.manual_seed(0)
    model = PGMRE(make_config(variant), str(encoder_dir), NUM_LABELS, VISUAL_DIM, use_phrases=True).eval()
    batch = phrase_batch()
    base = model(batch).logits
    other = dict(batch, phrase_input_ids=batch["phrase_input_ids"].flip(0))
    assert not torch.allclose(model(other).logits, base, atol=1e-5)
    padded = dict(batch, phrase_input_ids=batch["phrase_input_ids"].clone())
    padded["phrase_input_ids"][:, 3:] = 7  # masked positions
    assert torch.allclose(model(padded).logits, base, atol=1e-5)
    with pytest.raises(KeyError, match="phrase_input_ids"):
        model({k: v for k, v in batch.items() if not k.startswith("phrase")})


def test_phrase_models_round_trip(encoder_dir: Path, tmp_path: Path) -> None:  # noqa: F811
    torch.manual_seed(0)
    model = PGMRE(make_config("full"), str(encoder_dir), NUM_LABELS, VISUAL_DIM, use_phrases=True).eval()
    model.save_pretrained(tmp_path / "m")
    loaded = PGMRE.from_pretrained(tmp_path / "m")
    assert loaded.use_phrases and torch.allclose(loaded(phrase_batch()).logits, model(phrase_batch()).logits)


def write_leaky_phrases(dataset: SyntheticDataset, directory: Path) -> str:
    """Phrases that end with the gold relation's last word, like MNRE's type words: a planted leak."""
    for split, path in (("train", dataset.train), ("dev", dataset.dev)):
        samples = load_samples(path)
        leak = {
            str(i): f"{s.head.name} {s.tail.name} {s.relation.split('/')[-1]}" for i, s in enumerate(samples)
        }
        (directory / f"phrases_{split}.json").write_text(json.dumps(leak))
    return str(directory / "phrases_{split}.json")


def test_a_leak_free_run_that_would_read_a_leaky_input_is_refused(
    synthetic_dataset: SyntheticDataset,
    tiny_bert: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    """Its model card and reports would call it leak-free: refused before training, with the way out."""
    import yaml
    from typer.testing import CliRunner

    from pgmre.cli import app

    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path, train={"epochs": 1})
    assert raw.get("protocol", "leak-free") == "leak-free"
    raw["text"]["phrases"] = write_leaky_phrases(synthetic_dataset, tmp_path)
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    result = CliRunner().invoke(
        app, ["train", "--config", str(tmp_path / "c.yaml"), "--run-dir", str(run_dir)]
    )
    assert result.exit_code == 2, result.output
    assert "LabelLeakError" in result.output and "text.phrases" in result.output
    assert "protocol=published" in result.output
    assert not (run_dir / "last").exists() and not (run_dir / "README.md").exists()


def test_published_protocol_run_says_so_everywhere(
    synthetic_dataset: SyntheticDataset,
    tiny_bert: Path,  # noqa: F811
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A run fed label-carrying phrases is labelled in its log, model card, report.json and report.md."""
    from typer.testing import CliRunner

    from pgmre.cli import app

    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path, train={"epochs": 1})
    raw["protocol"] = "published"
    raw["text"]["phrases"] = write_leaky_phrases(synthetic_dataset, tmp_path)
    with caplog.at_level(logging.WARNING, logger="pgmre.train.run"):
        summary = run_training(config_from_dict(raw), tmp_path / "run")
    assert PUBLISHED_PROTOCOL_NOTE in caplog.text
    assert "label-predictive auxiliary input: input 'text.phrases'" in caplog.text  # the train-time audit
    audit = json.loads((summary.run_dir / "audit.json").read_text())
    assert audit["flagged"] and {f["input"] for f in audit["flagged"]} == {"text.phrases"}
    assert PUBLISHED_PROTOCOL_NOTE in (summary.run_dir / "README.md").read_text()
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--run",
            str(summary.run_dir),
            "--data",
            str(synthetic_dataset.dev),
        ],  # split from the name
    )
    assert result.exit_code == 0, result.output
    out = summary.run_dir / "eval-dev"
    report = json.loads((out / "report.json").read_text())
    assert report["protocol"] == "published" and PUBLISHED_PROTOCOL_NOTE in report["protocol_note"]
    assert PUBLISHED_PROTOCOL_NOTE in (out / "report.md").read_text()


def test_train_with_a_missing_phrases_file_exits_2(
    synthetic_dataset: SyntheticDataset,
    tiny_bert: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    import yaml
    from typer.testing import CliRunner

    from pgmre.cli import app

    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path)
    raw["text"]["phrases"] = str(tmp_path / "absent_{split}.json")
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "c.yaml")])
    assert result.exit_code == 2 and "absent_" in result.output
