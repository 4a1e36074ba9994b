"""A run directory's files, as loaders read them: one error type that names the file and the fix.

``pgmre predict``, ``evaluate``, ``serve`` and the Python API load a run through
:meth:`~pgmre.pipeline.MREPipeline.from_run` (``config.yaml``, ``rel2id.json``, ``tokenizer/``) and
:meth:`~pgmre.model.PGMRE.from_pretrained` (``best/`` or ``last/``: ``pgmre_config.json``,
``model.safetensors``). Whatever is wrong with one of those files (missing, empty, truncated, not
JSON, weights that do not fit the config) surfaces as :class:`RunLoadError`, never as a library's
own exception, and the command exits 2.
"""

from __future__ import annotations

from pathlib import Path

RETRAIN = "re-train the run (pgmre train --config ...) or restore the run directory from a backup"


class RunLoadError(Exception):
    """A run directory or checkpoint that cannot be loaded. The message names the file, says what is
    wrong with it and what to do; ``path`` is that file."""

    def __init__(self, path: str | Path, problem: str, fix: str = RETRAIN) -> None:
        super().__init__(f"{path}: {problem}; {fix}")
        self.path = Path(path)


def checkpoint_fix(checkpoint_dir: str | Path) -> str:
    """What to do about a damaged checkpoint directory: the other checkpoint of the run, if there is one."""
    directory = Path(checkpoint_dir)
    other = {"best": "last", "last": "best"}.get(directory.name)
    if other is not None and (directory.parent / other).is_dir():
        return (
            f"load the run's other checkpoint instead (--checkpoint {other}; in Python, "
            f"checkpoint={other!r}), or {RETRAIN}"
        )
    return RETRAIN


def describe(err: BaseException) -> str:
    """One line for a loader's exception: its type and the first line of its message."""
    first = str(err).strip().splitlines()
    return f"{type(err).__name__}: {first[0]}" if first else type(err).__name__
