"""Run-directory checkpoints: written atomically, complete enough to resume bit-for-bit."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import random
import shutil
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pgmre.runfiles import RunLoadError, describe

log = logging.getLogger(__name__)

TRAINER_STATE = "trainer_state.pt"


@dataclass
class Progress:
    """Where training stands: the next batch to run is ``batch_in_epoch`` of ``epoch``."""

    epoch: int = 0
    batch_in_epoch: int = 0
    global_step: int = 0
    best_f1: float = -1.0
    best_epoch: int = -1
    history: list[dict[str, Any]] = field(default_factory=list)
    #: the ``train.length_buckets`` this run's batches were drawn with (``None``: a run older than the
    #: setting, whose batches were plain slices of the shuffled order); a resumed run keeps it
    length_buckets: int | None = None
    #: the unfinished epoch's time, loss sum and batch count up to the checkpoint, so that a resumed
    #: epoch still reports its whole time and mean loss
    epoch_seconds: float = 0.0
    epoch_loss_sum: float = 0.0
    epoch_batches: int = 0


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Yield a scratch directory that replaces ``target`` only once everything inside is written.

    A crash at any point leaves either the old complete directory or the new complete one.
    """
    target = Path(target)
    tmp = target.with_name(target.name + ".tmp")
    old = target.with_name(target.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    yield tmp
    for path in tmp.iterdir():
        if path.is_file():
            with open(path, "rb") as fh:
                os.fsync(fh.fileno())
    if target.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def recover_interrupted(target: Path) -> None:
    """After a crash between the two renames, ``target.old`` is the last complete checkpoint."""
    target = Path(target)
    old = target.with_name(target.name + ".old")
    if not target.exists() and old.exists():
        os.replace(old, target)


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_trainer_state(
    directory: Path,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    progress: Progress,
    ranks: list[dict[str, Any]],
    scaler: Any = None,
) -> None:
    """``ranks``: every process's :func:`process_state`, in rank order (one entry without DDP). The
    top-level ``rng`` and ``prototype_banks`` stay rank 0's, all that a checkpoint older than ``ranks``
    holds."""
    torch.save(
        {
            "prototype_banks": ranks[0]["prototype_banks"],
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": ranks[0]["rng"],
            "ranks": ranks,
            "progress": asdict(progress),
        },
        Path(directory) / TRAINER_STATE,
    )


def process_state(prototype_banks: dict[str, Any]) -> dict[str, Any]:
    """What one process keeps of its own between steps: its RNG state and its prototype banks' buffers."""
    return {"rng": rng_state(), "prototype_banks": prototype_banks}


def rank_state(state: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """The ``rng`` and ``prototype_banks`` that process ``rank`` of ``world_size`` resumes with: its own
    where as many processes wrote the checkpoint, else rank 0's (a warning says so: dropout and the
    k-means refresh then differ from an uninterrupted run's on the other ranks)."""
    ranks = state.get("ranks") or [{"rng": state["rng"], "prototype_banks": state.get("prototype_banks", {})}]
    if len(ranks) == world_size:
        return ranks[rank]
    if rank == 0 and "ranks" not in state:
        log.warning(
            "the checkpoint was written before pgmre saved each process's state: every process resumes "
            "with rank 0's RNG state and prototype buffers, so dropout will not repeat the interrupted run's"
        )
    elif rank == 0:
        log.warning(
            "the checkpoint was written by %d process(es), this run has %d: each epoch's split between "
            "the processes changes, and every process resumes with rank 0's RNG state and prototype buffers",
            len(ranks),
            world_size,
        )
    return ranks[0]


def load_trainer_state(directory: Path) -> dict[str, Any]:
    path = Path(directory) / TRAINER_STATE
    if not path.exists():
        raise FileNotFoundError(f"{path}: no trainer state to resume from")
    try:  # our own file (optimizer state, RNG tuples): not loadable with weights_only
        return torch.load(path, map_location="cpu", weights_only=False)
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError, zipfile.BadZipFile) as err:
        # torch names no file for a truncated or overwritten archive
        raise RunLoadError(
            path,
            f"damaged trainer state ({describe(err)})",
            "the run cannot resume from it; train again into a new --run-dir",
        ) from err
