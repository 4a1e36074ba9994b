"""``pgmre train``: config in, run directory out."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgmre.config import Config, protocol_statement
from pgmre.data.mnre import load_split
from pgmre.pipeline import MREPipeline
from pgmre.train.checkpoint import Progress
from pgmre.train.model_card import history_from, write_model_card
from pgmre.train.trainer import Trainer, make_accelerator

log = logging.getLogger(__name__)


@dataclass
class TrainSummary:
    run_dir: Path
    progress: Progress
    seconds: float
    train_samples: int
    dev_samples: int


def default_run_dir(config: Config) -> Path:
    name = config.train.run_name or time.strftime("%Y%m%d-%H%M%S")
    return Path(config.train.output_dir) / name


def _audit_aux_inputs(config: Config, train_samples: list, pipeline: MREPipeline) -> Any:
    """Name every auxiliary input the model reads that predicts the label on its own, before training.

    The audit is ``pgmre data audit`` cross-validated on the training data (seconds); the run keeps it as
    ``audit.json``/``audit.md``. A published-protocol run is told which inputs carry the label; a run
    labelled leak-free that would read one is refused, because its model card and reports would call
    numbers leak-free that are not.
    """
    from pgmre.data.audit import LabelLeakError, audit_aux_inputs, aux_inputs_from_config

    inputs = aux_inputs_from_config(config)
    if not inputs:
        return None
    report = audit_aux_inputs(train_samples, None, inputs, vocab=pipeline.vocab)
    for flag in report.flagged:
        log.warning("label-predictive auxiliary input: %s (docs/leakage.md)", flag)
    if report.flagged and config.protocol != "published":
        raise LabelLeakError(
            f"protocol is leak-free, but {', '.join(report.flagged_inputs)} predicts the label on its own "
            f"({'; '.join(map(str, report.flagged))}): drop the input, or set protocol=published to label "
            "the run as what it is (docs/leakage.md)"
        )
    return report


def run_training(config: Config, run_dir: str | Path | None = None, resume: bool = False) -> TrainSummary:
    """Load the data, encode it (features are cached on disk), train, and keep the best checkpoint."""
    if not config.data.train:
        raise ValueError("data.train is not set: nothing to train on")
    started = time.perf_counter()
    run_dir = Path(run_dir) if run_dir else default_run_dir(config)
    accelerator = make_accelerator(config)
    pipeline = MREPipeline.from_config(config, progress=True)
    train_samples = load_split(config.data.train, pipeline.vocab, config.data.strict)
    if config.data.max_train_samples:
        train_samples = train_samples[: config.data.max_train_samples]
    dev_samples = load_split(config.data.dev, pipeline.vocab, config.data.strict) if config.data.dev else []
    if config.data.max_eval_samples:
        dev_samples = dev_samples[: config.data.max_eval_samples]
    audit = _audit_aux_inputs(config, train_samples, pipeline)
    # Rank 0 fills the explanation and feature caches first; the other ranks then only read them.
    with accelerator.main_process_first():
        train_set = pipeline.dataset(train_samples, split="train")
        dev_set = pipeline.dataset(dev_samples, split="dev") if dev_samples else None
    log.info("train: %d samples, dev: %d samples, run dir: %s", len(train_samples), len(dev_samples), run_dir)
    log.log(logging.WARNING if config.protocol == "published" else logging.INFO, protocol_statement(config))
    trainer = Trainer(config, run_dir, accelerator=accelerator)
    progress = trainer.fit(pipeline, train_set, dev_set, resume=resume)
    seconds = time.perf_counter() - started
    if trainer.is_main:
        write_model_card(
            run_dir,
            config,
            history_from(run_dir),
            seconds,
            progress.best_epoch if progress.best_epoch > 0 else None,
        )
        if audit is not None:
            from pgmre.data.audit import write_report

            write_report(audit, run_dir)
    return TrainSummary(run_dir, progress, seconds, len(train_samples), len(dev_samples))
