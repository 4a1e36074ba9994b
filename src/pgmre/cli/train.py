"""``pgmre train`` and ``pgmre evaluate``."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer

from pgmre.cli.common import DeviceOption, PrecisionOption, VocabOption, precision_value
from pgmre.config import ConfigError, load_config
from pgmre.data.audit import AuxInputError, LabelLeakError
from pgmre.data.mnre import DataError
from pgmre.data.phrases import PhraseFileError
from pgmre.evaluate.metrics import ScoreError
from pgmre.explain import BackendUnavailable, CacheError, ExplanationsMissing
from pgmre.outputs import OutputPathError
from pgmre.runfiles import RunLoadError

# Errors caused by inputs (data, config, missing files or explanations, a damaged run or cache, an --out
# that would overwrite an input): a message and exit 2, not a traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (
    ConfigError,
    FileNotFoundError,
    FileExistsError,
    DataError,
    ExplanationsMissing,
    ScoreError,
    RunLoadError,
    CacheError,
    OutputPathError,
    PhraseFileError,
    AuxInputError,
    LabelLeakError,
    BackendUnavailable,
    # the other input checks raise ValueError or a subclass with the reason: no data.train, a bad
    # rel2id file, heads that do not divide the encoder's width, a missing encoder, a damaged caption
    # file, crop list or image
    ValueError,
)


def _fail(message: str) -> None:
    typer.secho(message, fg="red", err=True)
    raise typer.Exit(2)


def _fail_on(err: BaseException) -> None:
    """Exit 2 with the error's message; with PGMRE_DEBUG=1 in the environment, raise it with its traceback
    (``ValueError`` is caught as an input error, and an internal bug may raise one too)."""
    if os.environ.get("PGMRE_DEBUG"):
        raise err
    _fail(f"{type(err).__name__}: {err}")


def train(
    config: Path = typer.Option(None, "--config", "-c", help="YAML config (the single source of truth)"),
    overrides: list[str] = typer.Argument(None, help="key.path=value overrides, e.g. train.epochs=2"),
    run_dir: Path = typer.Option(
        None, "--run-dir", help="where to write the run (default: train.output_dir/<time>)"
    ),
    resume: Path = typer.Option(
        None, "--resume", help="continue an interrupted run from its last checkpoint"
    ),
    variant: str = typer.Option(
        None, "--variant", help="model variant: text-only|base|ent|ent-apm|ent-rpm|full"
    ),
    settings: list[str] = typer.Option(None, "--set", help="config override key.path=value (repeatable)"),
) -> None:
    """Train a model; the best checkpoint on dev micro-F1 is kept in RUN_DIR/best."""
    from pgmre.train.run import run_training
    from pgmre.train.trainer import TrainingInterrupted

    overrides = list(overrides or []) + list(settings or [])
    if variant:
        from pgmre.model import variant_overrides

        try:
            overrides = [
                f"model.{k}={json.dumps(v)}" for k, v in variant_overrides(variant).items()
            ] + overrides
        except ValueError as err:
            _fail(str(err))
    try:
        if resume is not None:
            cfg = load_config(config or resume / "config.yaml", overrides)
            run_dir = resume
        else:
            if config is None:
                _fail("--config is required (or --resume RUN_DIR)")
            cfg = load_config(config, overrides)
    except ConfigError as err:
        _fail(str(err))
    try:
        summary = run_training(cfg, run_dir, resume=resume is not None)
    except TrainingInterrupted as err:
        typer.secho(str(err), fg="yellow", err=True)
        raise typer.Exit(130) from None
    except USER_ERRORS as err:
        _fail_on(err)
    p = summary.progress
    typer.echo(
        json.dumps(
            {
                "run_dir": str(summary.run_dir),
                "best_epoch": p.best_epoch,
                "best_dev_f1": p.best_f1,
                "epochs": p.epoch,
                "steps": p.global_step,
                "seconds": round(summary.seconds, 1),
            }
        )
    )


def evaluate(
    run: Path = typer.Option(..., "--run", help="run directory written by `pgmre train`"),
    data: Path = typer.Option(..., "--data", help="MNRE-format or JSONL file to evaluate on"),
    train_file: Path = typer.Option(
        None, "--train", help="training file: adds the unseen/untokenizable subsets"
    ),
    out: Path = typer.Option(None, "--out", help="output directory (default: RUN/eval-<data stem>)"),
    checkpoint: str = typer.Option("best", help="best or last"),
    split: str = typer.Option(None, help="split name for {split} in visual paths (default: all splits)"),
    precision: PrecisionOption = None,
    device: DeviceOption = None,
    vocab: VocabOption = None,
) -> None:
    """Score a run: report.json, report.md, predictions.jsonl and plots."""
    from pgmre.evaluate.report import evaluate_run

    if vocab is not None and train_file is None:
        _fail("--vocab defines the untokenizable subset, which needs --train (the seen entities)")
    if not (run / checkpoint).exists() and not (run / f"{checkpoint}.old").exists():
        _fail(f"{run / checkpoint}: no such checkpoint (train first, or pick --checkpoint last)")
    try:
        result = evaluate_run(
            run,
            data,
            train_file,
            out,
            checkpoint=checkpoint,
            split=split,
            precision=precision_value(precision),
            device=device,
            vocab_path=vocab,
        )
    except USER_ERRORS as err:
        _fail_on(err)
    r = result.report
    summary = {k: r[k] for k in ("n", "accuracy", "precision", "recall", "f1", "macro_f1")}
    if "subsets" in r:
        summary["subsets"] = {k: {m: v[m] for m in ("n", "accuracy", "f1")} for k, v in r["subsets"].items()}
    summary["out_dir"] = str(result.out_dir)
    typer.echo(json.dumps(summary, indent=1))


def register(app: typer.Typer) -> None:
    app.command("train")(train)
    app.command("evaluate")(evaluate)
