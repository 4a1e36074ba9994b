"""End-to-end training: a tiny run trains, checkpoints, evaluates and resumes exactly."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.config import ConfigError, config_from_dict, load_config
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.evaluate.inference import predict_dataset
from pgmre.pipeline import MREPipeline
from pgmre.train.checkpoint import (
    Progress,
    load_trainer_state,
    rank_state,
    rng_state,
    save_trainer_state,
    set_rng_state,
)
from pgmre.train.run import run_training
from pgmre.train.trainer import epoch_order

from tiny import make_tiny_bert


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def tiny_config(ds: SyntheticDataset, encoder: Path, tmp: Path, **sections: dict) -> dict:
    raw: dict = {
        "seed": 7,
        "data": {"train": str(ds.train), "dev": str(ds.dev)},
        "text": {"encoder": str(encoder), "max_length": 64},
        "visual": {
            "source": "caption",
            "num_objects": 1,
            "captions": {"image": str(ds.captions_a), "objects": [str(ds.captions_b)]},
            "feature_cache": str(tmp / "features"),
        },
        "model": {
            "use_explanations": False,
            "use_apm": False,
            "use_rpm": True,
            "num_heads": 2,
            "num_rel_prototypes": 4,
            "dropout": 0.0,
        },
        "train": {"epochs": 3, "batch_size": 8, "lr": 5e-4, "output_dir": str(tmp / "runs")},
    }
    for section, values in sections.items():
        raw.setdefault(section, {}).update(values)
    return raw


def test_config_errors_name_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        config_from_dict({"train": {"epochs": "many"}})
    with pytest.raises(ConfigError, match=r"model\.no_such_switch"):
        config_from_dict({"model": {"no_such_switch": True}})
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        config_from_dict({}, overrides=["train.epochs"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    assert (
        config_from_dict(
            {},
            overrides=[
                "train.epochs=3",
                "visual.source=none",
                "model.use_visual=false",
                "model.use_rpm=false",
            ],
        ).train.epochs
        == 3
    )


def test_a_text_override_that_yaml_reads_as_a_number_stays_text() -> None:
    config = config_from_dict({}, overrides=["train.run_name=2024", "train.output_dir=on", "train.epochs=3"])
    assert (config.train.run_name, config.train.output_dir, config.train.epochs) == ("2024", "on", 3)
    with pytest.raises(ConfigError, match=r"train\.epochs"):
        config_from_dict({}, overrides=["train.run_name=2024", "train.epochs=many"])


def test_config_extends_another_and_overrides_it(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text("seed: 1\ntrain:\n  epochs: 3\n  lr: 0.001\n")
    (tmp_path / "child.yaml").write_text("extends: base.yaml\nprotocol: published\ntrain:\n  epochs: 5\n")
    config = load_config(tmp_path / "child.yaml", ["seed=9"])
    assert (config.seed, config.train.epochs, config.train.lr, config.protocol) == (9, 5, 0.001, "published")
    (tmp_path / "loop.yaml").write_text("extends: loop.yaml\n")
    with pytest.raises(ConfigError, match="loops back"):
        load_config(tmp_path / "loop.yaml")
    (tmp_path / "orphan.yaml").write_text("extends: absent.yaml\n")
    with pytest.raises(ConfigError, match=r"absent\.yaml: cannot read config"):
        load_config(tmp_path / "orphan.yaml")
    shipped = load_config(Path(__file__).parents[1] / "configs" / "published-protocol.yaml")
    assert shipped.protocol == "published" and shipped.text.phrases and shipped.model.use_rpm


def test_epoch_order_is_seeded_and_shards_evenly() -> None:
    a = epoch_order(10, seed=1, epoch=0, rank=0, world=1)
    assert sorted(a) == list(range(10))
    assert a == epoch_order(10, seed=1, epoch=0, rank=0, world=1)
    assert a != epoch_order(10, seed=1, epoch=1, rank=0, world=1)
    r0, r1 = (epoch_order(9, seed=1, epoch=0, rank=r, world=2) for r in (0, 1))
    assert len(r0) == len(r1) == 5 and set(r0) | set(r1) == set(range(9))


def test_train_then_evaluate(synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path) -> None:
    config = config_from_dict(tiny_config(synthetic_dataset, tiny_bert, tmp_path))
    summary = run_training(config, tmp_path / "run")
    run = summary.run_dir
    for name in (
        "config.yaml",
        "rel2id.json",
        "metrics.jsonl",
        "metrics.csv",
        "best/model.safetensors",
        "last/model.safetensors",
        "last/trainer_state.pt",
        "tokenizer/tokenizer.json",
        "README.md",
    ):
        assert (run / name).exists(), name
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]
    assert summary.progress.best_f1 == max(r["dev_f1"] for r in rows)

    # Length-sorted batched inference returns outputs in dataset order, equal to one-at-a-time inference.
    pipeline = MREPipeline.from_run(run)
    model = pipeline.load_model(run / "best")
    test_set = pipeline.dataset(load_samples(synthetic_dataset.test, pipeline.vocab))
    batched, single = (predict_dataset(model, test_set, pipeline.collate, batch_size=b) for b in (16, 1))
    assert np.allclose(batched.probs, single.probs, atol=1e-5)
    assert (batched.rel_ids == single.rel_ids).all()

    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            "--run",
            str(run),
            "--data",
            str(synthetic_dataset.test),
            "--train",
            str(synthetic_dataset.train),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    out = run / "eval-test"
    report = json.loads((out / "report.json").read_text())
    assert report["n"] == 16 and set(report["subsets"]) >= {"unseen", "untokenizable"}
    preds = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(preds) == 16
    assert all(len(p["top"]) == 3 and p["relation_prototype"] is not None for p in preds)
    top = [t["probability"] for t in preds[0]["top"]]
    assert top == sorted(top, reverse=True) and sum(top) <= 1 + 1e-6
    for png in ("training_curves.png", "confusion.png", "prototypes.png", "projection.png", "report.md"):
        assert (out / png).stat().st_size > 0, png


def test_refuses_to_overwrite_a_run(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    config = config_from_dict(tiny_config(synthetic_dataset, tiny_bert, tmp_path, train={"epochs": 1}))
    run_training(config, tmp_path / "run")
    with pytest.raises(FileExistsError, match="--resume"):
        run_training(config, tmp_path / "run")


def test_gradient_accumulation_steps_on_the_mean_also_in_a_short_last_group(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    """24 samples: one batch of 16, against 4 batches of 4 per step; the second step holds only 2 of them.

    Every optimizer step must see the gradient of the mean loss over its samples, so the two runs' steps
    see the same gradient norms; dividing the short group by 4 would halve its gradient.
    """
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    encoder = make_tiny_bert(tmp_path / "bert", dropout=0.0)  # no dropout: the two runs see one network

    def grad_norms(batch_size: int, accum: int) -> list[float]:
        raw = tiny_config(
            synthetic_dataset,
            encoder,
            tmp_path,
            data={"max_train_samples": 24},
            model={"use_visual": False, "use_rpm": False},  # no prototype EMA: a step sees gradients only
            train={"epochs": 1, "batch_size": batch_size, "grad_accum": accum, "grad_clip": None},
        )
        norms: list[float] = []

        def record(optimizer: torch.optim.Optimizer, args: object, kwargs: object) -> None:
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

        handle = register_optimizer_step_pre_hook(record)
        try:
            run_training(config_from_dict(raw), tmp_path / f"b{batch_size}x{accum}")
        finally:
            handle.remove()
        return norms

    whole, accumulated = grad_norms(16, 1), grad_norms(4, 4)
    assert len(whole) == len(accumulated) == 2
    assert accumulated == pytest.approx(whole, rel=1e-4)


def test_eval_every_epoch_off_scores_dev_once_and_keeps_the_last_epoch(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path, train={"epochs": 2, "eval_every_epoch": False})
    summary = run_training(config_from_dict(raw), tmp_path / "run")
    rows = [json.loads(x) for x in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert ["dev_f1" in r for r in rows] == [False, True]
    assert summary.progress.best_epoch == 2 and summary.progress.best_f1 == rows[-1]["dev_f1"]
    card = (summary.run_dir / "README.md").read_text()
    assert f"selected on dev micro-F1): epoch 2,\n  dev micro-F1 {rows[-1]['dev_f1']:.2f}" in card

    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path, data={"dev": None}, train={"epochs": 2})
    summary = run_training(config_from_dict(raw), tmp_path / "no_dev")
    card = (summary.run_dir / "README.md").read_text()
    assert "(`best/`, no dev set to select on: the last epoch): epoch 2." in card
    assert "- **Training**: 2 epochs, batch" in card
    model_line = card.split("- **Model**")[1].split("- **Data**")[0]
    assert "t = 4 relation prototypes" in model_line and "attribute" not in model_line  # RPM only


def test_resume_from_a_damaged_trainer_state_names_the_file(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    config = config_from_dict(tiny_config(synthetic_dataset, tiny_bert, tmp_path, train={"epochs": 1}))
    run = run_training(config, tmp_path / "run").run_dir
    state = run / "last" / "trainer_state.pt"
    state.write_bytes(state.read_bytes()[:100])  # cut short, as by a full disk
    result = CliRunner().invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 2, result.output
    assert f"{state}: damaged trainer state" in result.output.replace("\n", "")
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["epochs"] == 1


def _one_process(*args: str) -> list[str]:
    return [sys.executable, "-m", "pgmre.cli", "train", *args]


def _torchrun(*args: str) -> list[str]:
    """``pgmre train`` in two processes; ``--standalone`` picks a free port (no clash with a leftover run)."""
    torchrun = Path(sys.executable).with_name("torchrun")
    return [str(torchrun), "--standalone", "--nproc_per_node", "2", "-m", "pgmre.cli", "train", *args]


def _killed_run_resumes_exactly(
    launch: Callable[..., list[str]], config: dict, tmp_path: Path, keep: tuple[str, ...]
) -> Path:
    """Train ``config`` straight through, and again killed (SIGKILL, workers included) after its first
    epoch, then resumed; both must log the same dev scores and ``keep`` columns per epoch and end with
    bit-for-bit the same weights. Returns the resumed run."""
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def train(*args: str) -> None:
        done = subprocess.run(launch(*args), capture_output=True, text=True, timeout=300, env=env)
        assert done.returncode == 0, done.stderr[-3000:]

    straight, killed = tmp_path / "straight", tmp_path / "killed"
    train("--config", str(config_path), "--run-dir", str(straight))
    proc = subprocess.Popen(
        launch("--config", str(config_path), "--run-dir", str(killed)),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # torchrun's workers outlive a SIGKILL of torchrun alone
    )
    metrics = killed / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not metrics.exists():  # kill during epoch 2, after a checkpoint
        time.sleep(0.05)
    assert metrics.exists(), "the run finished no epoch in 240 s"
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    epochs = config["train"]["epochs"]
    assert len(metrics.read_text().splitlines()) < epochs, "the run finished before it was killed"
    assert (killed / "last" / "trainer_state.pt").exists() or (killed / "last.old").exists()
    train("--resume", str(killed))

    def history(run: Path) -> list[dict]:
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if k.startswith("dev_") or k in keep} for r in rows]

    assert history(killed) == history(straight)  # every epoch, once each
    a, b = (load_file(run / "last" / "model.safetensors") for run in (killed, straight))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)  # bit-for-bit the same weights
    return killed


def test_resume_after_sigkill_matches_uninterrupted(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    # Dropout on: an exact resume must also restore the dropout masks (RNG state), not only the weights;
    # the k-means refresh of the prototypes every 3 steps: its step count and recent features too.
    raw = tiny_config(
        synthetic_dataset,
        tiny_bert,
        tmp_path,
        # 6 batches an epoch in pools of 2: the bucketed batch list must resume at the same batch
        train={"epochs": 4, "checkpoint_every_steps": 1, "length_buckets": 2},
        model={"dropout": 0.1, "prototype_refresh_steps": 3},
    )
    # one process: the resumed epoch's mean train loss (which covers its first part too) must match
    _killed_run_resumes_exactly(_one_process, raw, tmp_path, keep=("epoch", "step", "train_loss"))


def test_two_process_gloo_training_writes_once(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    # k-means refreshes at steps 2, 4, 6: each rank clusters its own features, rank 0's bank is broadcast
    model = {"prototype_refresh_steps": 2}
    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path, train={"epochs": 2}, model=model)
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(raw))
    run = tmp_path / "ddp"
    cmd = _torchrun("--config", str(config_path), "--run-dir", str(run))
    proc = subprocess.run(
        cmd, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]  # rank 0 alone wrote the metrics
    # 48 samples over 2 processes at batch 8: 3 optimizer steps per epoch (each step sees 16 samples)
    assert rows[-1]["step"] == 6
    assert (run / "best" / "model.safetensors").exists() and not list(run.glob("*.tmp"))


def test_two_process_resume_after_sigkill_matches_uninterrupted(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    # The whole two-process resume, bit for bit, and each process's own state in the checkpoint. On the
    # CPU torch's dropout draws one seed per call, so the ranks' generators stay in step and the weights
    # alone would match with rank 0's state on both; on CUDA the generators drift apart with each rank's
    # padded lengths, and the refresh buffers differ everywhere (each rank's own batches).
    raw = tiny_config(
        synthetic_dataset,
        tiny_bert,
        tmp_path,
        train={"epochs": 6, "checkpoint_every_steps": 1},
        model={"dropout": 0.1, "prototype_refresh_steps": 2},
    )
    killed = _killed_run_resumes_exactly(_torchrun, raw, tmp_path, keep=("epoch", "step"))
    ranks = load_trainer_state(killed / "last")["ranks"]
    assert len(ranks) == 2
    banks = ranks[0]["prototype_banks"]
    assert banks and all(len(banks[b]["recent"]) for b in banks)
    assert any(not torch.equal(banks[b]["recent"], ranks[1]["prototype_banks"][b]["recent"]) for b in banks)


def test_each_rank_resumes_its_own_rng_and_banks(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    model = torch.nn.Linear(2, 2)
    optimizer = torch.optim.AdamW(model.parameters())
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    ranks = []
    for rank in range(2):  # two processes whose generators have drifted apart
        torch.manual_seed(rank)
        ranks.append({"rng": rng_state(), "prototype_banks": {"apm": {"usage": torch.tensor([rank])}}})
    save_trainer_state(tmp_path, optimizer, scheduler, Progress(), ranks=ranks)
    state = load_trainer_state(tmp_path)
    for rank in range(2):
        own = rank_state(state, rank, 2)
        set_rng_state(own["rng"])
        torch.manual_seed(rank)
        expected = torch.rand(3)
        set_rng_state(own["rng"])
        assert torch.equal(torch.rand(3), expected)
        assert int(own["prototype_banks"]["apm"]["usage"]) == rank
    # resumed by another number of processes (or an older checkpoint): rank 0's for all, with a warning
    with caplog.at_level("WARNING"):
        assert rank_state(state, 0, 3) is state["ranks"][0]
        assert rank_state(state, 2, 3) is state["ranks"][0]
    assert "every process resumes with rank 0's" in caplog.text
    older = {k: v for k, v in state.items() if k != "ranks"}
    assert rank_state(older, 0, 1)["rng"] is state["rng"]


def test_input_errors_exit_2_with_the_reason(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path
) -> None:
    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path)
    del raw["data"]["train"]
    (tmp_path / "no_train.yaml").write_text(yaml.safe_dump(raw))
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "no_train.yaml")])
    assert result.exit_code == 2 and "data.train is not set" in result.output, result.output
    result = CliRunner().invoke(app, ["demo", "--epochs", "0", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 2 and not (tmp_path / "demo").exists(), result.output


def test_pgmre_debug_shows_the_traceback_of_an_input_error(
    synthetic_dataset: SyntheticDataset, tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = tiny_config(synthetic_dataset, tiny_bert, tmp_path)
    del raw["data"]["train"]
    (tmp_path / "no_train.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("PGMRE_DEBUG", "1")
    result = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "no_train.yaml")])
    assert isinstance(result.exception, ValueError) and "data.train is not set" in str(result.exception)
