"""What the benchmark scripts share: the repository root and the ``pgmre train`` command they launch.

Every MNRE benchmark trains in a subprocess (so its memory and threads are its own) on
``configs/cpu.yaml`` plus overrides; building that command line in one place keeps them comparable.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PGMRE = [sys.executable, "-m", "pgmre.cli"]
TRAIN = "../shared/data/mnre/mnre_train.txt"
VAL = "../shared/data/mnre/mnre_val.txt"


def train_command(
    variant: str, run_dir: Path, *overrides: str, config: str = "configs/cpu.yaml"
) -> list[str]:
    """``pgmre train`` of a named variant into ``run_dir``, with ``key=value`` overrides."""
    return [*PGMRE, "train", "--config", config, "--variant", variant, "--run-dir", str(run_dir), *overrides]
