"""``pgmre features``: precompute visual features of the synthetic dataset, then hit the cache."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.synthetic import SyntheticDataset

from tiny import make_tiny_bert, make_tiny_vit


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert_cli"))


def write_config(tmp_path: Path, data: SyntheticDataset, text_encoder: Path, **visual: object) -> Path:
    config = {
        "data": {"train": str(data.train), "dev": str(data.dev)},
        "explain": {"cache": str(tmp_path / "explanations.sqlite")},
        "text": {"encoder": str(text_encoder)},
        "visual": {"feature_cache": str(tmp_path / "features"), "device": "cpu", **visual},
        "model": {"use_explanations": False, "use_apm": False},
    }
    if visual.get("source") == "none":
        config["model"].update({"use_visual": False, "use_rpm": False})
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def hits_misses(output: str, split: str) -> tuple[int, int]:
    found = re.search(rf"\b{split}: \d+ samples.*cache hits (\d+), misses (\d+)", output)
    assert found, output
    return int(found.group(1)), int(found.group(2))


def test_caption_features_are_computed_once(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        synthetic_dataset,
        tiny_bert,
        source="caption",
        captions={"image": str(synthetic_dataset.captions_a), "objects": [str(synthetic_dataset.captions_b)]},
    )
    runner = CliRunner()
    first = runner.invoke(app, ["features", "--config", str(config), "--split", "train"])
    assert first.exit_code == 0, first.output
    hits, misses = hits_misses(first.output, "train")
    assert hits == 0 and misses > 0
    assert "dev:" not in first.output

    second = runner.invoke(app, ["features", "-c", str(config)])
    assert second.exit_code == 0, second.output
    assert hits_misses(second.output, "train") == (misses, 0)
    assert hits_misses(second.output, "dev")[1] > 0


def test_image_features_with_grid_crops(synthetic_dataset: SyntheticDataset, tmp_path: Path) -> None:
    vit = make_tiny_vit(tmp_path / "vit")
    config = write_config(
        tmp_path,
        synthetic_dataset,
        tmp_path,
        source="image",
        encoder=str(vit),
        image_dir=str(synthetic_dataset.image_dir),
        crops={"auto": "grid"},
    )
    result = CliRunner().invoke(app, ["features", "-c", str(config), "-s", "dev"])
    assert result.exit_code == 0, result.output
    assert re.search(
        r"dev: 16 samples, image features d=16; .*filled slots \[16, 16, 16, 16\]", result.output
    )


def test_missing_captions_fail_with_the_image_named(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    (tmp_path / "few.json").write_text('{"nothing.jpg": "no such image"}')
    config = write_config(
        tmp_path,
        synthetic_dataset,
        tiny_bert,
        source="caption",
        captions={"image": str(tmp_path / "few.json")},
    )
    result = CliRunner().invoke(app, ["features", "-c", str(config), "-s", "train"])
    assert result.exit_code == 2
    assert re.search(r"error: train: \d+ missing caption\(s\), e\.g\. synth_train_\d+\.jpg", result.output)
    blank = CliRunner().invoke(
        app, ["features", "-c", str(config), "-s", "train", "--set", "visual.missing=blank"]
    )
    assert blank.exit_code == 0 and "missing inputs (visual.missing=blank" in blank.output


def test_frozen_explanations_without_cached_explanations_are_skipped_with_a_reason(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, synthetic_dataset, tiny_bert, source="none")
    result = CliRunner().invoke(
        app,
        [
            "features",
            "-c",
            str(config),
            "-s",
            "dev",
            "--set",
            "model.use_explanations=true",
            "--set",
            "model.use_rpm=false",
            "--set",
            "text.explanation_encoder=frozen",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "visual.source=none" in result.output
    assert "frozen explanation features skipped" in result.output


def test_bad_split_and_missing_data_paths(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    config = write_config(tmp_path, synthetic_dataset, tiny_bert, source="none")
    bad = CliRunner().invoke(
        app, ["features", "-c", str(config), "-s", "validation", "--set", "model.use_rpm=false"]
    )
    assert bad.exit_code == 2 and "--split must be one of" in bad.output
    none = CliRunner().invoke(
        app, ["features", "-c", str(config), "-s", "test", "--set", "model.use_rpm=false"]
    )
    assert none.exit_code == 2 and "no data.test path" in none.output
