"""``train.precision``: detection of bf16 hardware, bf16 autocast in training and inference, parity."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from pgmre import precision as prec
from pgmre.cli import app
from pgmre.config import config_from_dict
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.evaluate.inference import predict_dataset
from pgmre.pipeline import MREPipeline
from pgmre.serve.app import create_app
from pgmre.serve.predictor import Predictor
from pgmre.train.run import run_training
from test_train import tiny_config

from tiny import make_tiny_bert

SAPPHIRE_RAPIDS = """processor\t: 0
model name\t: Intel(R) Xeon(R) Platinum 8480+
flags\t\t: fpu sse sse2 avx avx2 avx512f avx512_bf16 amx_bf16 amx_tile amx_int8
"""
EPYC_MILAN = """processor\t: 0
model name\t: AMD EPYC
flags\t\t: fpu sse sse2 avx avx2 fma sha_ni vaes
"""
COOPER_LAKE = "flags : fpu avx512f avx512_bf16\n"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


@pytest.mark.parametrize(
    ("cpuinfo", "has_units"), [(SAPPHIRE_RAPIDS, True), (COOPER_LAKE, True), (EPYC_MILAN, False), ("", False)]
)
def test_bf16_units_are_read_from_cpu_flags(cpuinfo: str, has_units: bool) -> None:
    flags = prec.parse_cpu_flags(cpuinfo)
    assert prec.cpu_has_bf16_units(flags) is has_units


def test_cpu_flags_of_a_missing_file_are_empty(tmp_path: Path) -> None:
    assert prec.cpu_flags(str(tmp_path / "no-cpuinfo")) == frozenset()
    (tmp_path / "cpuinfo").write_text(SAPPHIRE_RAPIDS)
    assert "amx_bf16" in prec.cpu_flags(str(tmp_path / "cpuinfo"))
    assert prec.cpu_model_name(str(tmp_path / "cpuinfo")).startswith("Intel(R) Xeon")


@pytest.mark.parametrize(("cpuinfo", "expected"), [(SAPPHIRE_RAPIDS, "bf16"), (EPYC_MILAN, "fp32")])
def test_auto_picks_bf16_only_with_the_units(
    monkeypatch: pytest.MonkeyPatch, cpuinfo: str, expected: str
) -> None:
    monkeypatch.setattr(prec, "cpu_flags", lambda: prec.parse_cpu_flags(cpuinfo))
    assert prec.resolve_precision("auto", "cpu") == expected
    assert prec.resolve_precision("fp32", "cpu") == "fp32"
    assert prec.resolve_precision("bf16", "cpu") == "bf16"  # asked for explicitly: honoured
    assert prec.resolve_precision("auto", "cuda") == "fp32"  # CUDA: accelerate's mixed precision
    with pytest.raises(ValueError, match="auto, fp32 or bf16"):
        prec.resolve_precision("fp16", "cpu")


def test_cuda_mixed_precision_follows_the_setting() -> None:
    assert prec.accelerate_mixed_precision("fp32", "bf16") == "no"
    assert prec.accelerate_mixed_precision("bf16", "no") == "bf16"
    assert prec.accelerate_mixed_precision("auto", "fp16") == "fp16"


def test_autocast_runs_matmuls_in_bf16_only_when_asked() -> None:
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with prec.autocast("bf16", "cpu"):
        assert layer(x).dtype == torch.bfloat16
    with prec.autocast("fp32", "cpu"):
        assert layer(x).dtype == torch.float32


def test_bf16_training_tracks_fp32_and_is_recorded(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    """Parity: the per-epoch training loss under bf16 autocast stays within 5% (+0.02) of fp32's on the
    same seed and data, and inference in bf16 gives the same labels on nearly every sample."""
    losses = {}
    runs = {}
    for precision in ("fp32", "bf16"):
        raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path / precision, train={"precision": precision})
        summary = run_training(config_from_dict(raw), tmp_path / precision / "run")
        rows = [json.loads(x) for x in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
        assert {r["compute_precision"] for r in rows} == {precision}
        assert (
            f"arithmetic {precision} (`train.precision: {precision}`)"
            in (summary.run_dir / "README.md").read_text()
        )
        losses[precision] = np.array([r["train_loss"] for r in rows])
        runs[precision] = summary.run_dir
    assert losses["fp32"][-1] < losses["fp32"][0]
    assert np.all(np.abs(losses["bf16"] - losses["fp32"]) <= 0.05 * np.abs(losses["fp32"]) + 0.02), losses

    pipeline = MREPipeline.from_run(runs["fp32"])
    model = pipeline.load_model(runs["fp32"] / "best")
    test_set = pipeline.dataset(load_samples(synthetic_dataset.test, pipeline.vocab))
    fp32, bf16 = (
        predict_dataset(model, test_set, pipeline.collate, batch_size=8, precision=p)
        for p in ("fp32", "bf16")
    )
    assert bf16.probs.dtype == np.float32
    assert np.abs(bf16.probs - fp32.probs).max() < 0.05
    assert (bf16.labels == fp32.labels).mean() >= 0.9

    # the commands take --precision over the run's setting, and say what they used
    out = tmp_path / "eval-bf16"
    args = ["evaluate", "--run", str(runs["fp32"]), "--data", str(synthetic_dataset.test), "--out", str(out)]
    result = CliRunner().invoke(app, [*args, "--precision", "bf16"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "report.json").read_text())["compute_precision"] == "bf16"
    result = CliRunner().invoke(app, [*args[:-1], str(tmp_path / "eval-x"), "--precision", "fp16"])
    assert result.exit_code == 2 and "fp16" in result.output
    predictor = Predictor.from_pretrained(runs["bf16"])
    assert predictor.precision == "bf16"  # the run's own train.precision
    with TestClient(create_app(predictor)) as client:
        assert client.get("/health").json()["compute_precision"] == "bf16"


def test_a_resumed_older_run_keeps_its_csv_columns(tmp_path: Path) -> None:
    """A run written before a metrics key existed keeps its header: values stay under their names."""
    from pgmre.config import Config
    from pgmre.train.trainer import Trainer

    trainer = Trainer(Config(), tmp_path)
    (tmp_path / "metrics.csv").write_text("epoch,step,train_loss,dev_f1\n1,10,0.9,40.0\n")
    trainer._write_metrics(
        {"epoch": 2, "step": 20, "train_loss": 0.5, "compute_precision": "fp32", "dev_f1": 50.0}
    )
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert rows[1] == {"epoch": "2", "step": "20", "train_loss": "0.5", "dev_f1": "50.0"}
