"""Output files: checked before the work starts, written atomically when it is done.

Every command that writes a result (``score --out``, ``evaluate``, ``explain export``,
:func:`~pgmre.data.mnre.write_samples`) writes through :func:`atomic_write`: a temporary file in the
target's directory, then ``os.replace``, so a crash or an interrupt never leaves half a file. ``pgmre
predict`` does the same with a file it keeps for ``--resume``: ``<out>.partial``, replacing ``<out>``
once complete (:mod:`pgmre.serve.files`).
:func:`check_output_file` / :func:`check_output_dir` refuse, before any work, an output that is a
directory or that would overwrite one of the command's inputs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

# The mode new files get from open(); mkstemp's temporary files are 0600 and are widened to this.
_UMASK = os.umask(0)
os.umask(_UMASK)
_FILE_MODE = 0o666 & ~_UMASK


class OutputPathError(ValueError):
    """An output path that cannot be written, or that would overwrite an input; nothing was written."""


def _same_file(a: Path, b: Path) -> bool:
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_output_file(
    path: str | Path, inputs: Iterable[str | Path | None] = (), option: str = "--out"
) -> Path:
    """``path`` as a file to write: not a directory, its parent a directory (or creatable), no input."""
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path}: is a directory; give the path of a file to write")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise OutputPathError(f"{option} {path}: {parent} is a file, not a directory")
    for source in inputs:
        if source is not None and _same_file(path, Path(source)):
            raise OutputPathError(
                f"{option} {path}: is the input {source}; writing it would overwrite the input (pick another name)"
            )
    return path


def check_output_dir(
    directory: str | Path,
    names: Iterable[str],
    inputs: Iterable[str | Path | None] = (),
    option: str = "--out",
) -> Path:
    """``directory`` as the home of the files ``names``: not a file, and none of them an input."""
    directory = Path(directory)
    if directory.exists() and not directory.is_dir():
        raise OutputPathError(f"{option} {directory}: is a file; name a directory for the outputs")
    for name in names:
        check_output_file(directory / name, inputs, option)
    return directory


@contextlib.contextmanager
def atomic_write(path: str | Path, binary: bool = False) -> Iterator[IO[Any]]:
    """Yield a file handle whose content replaces ``path`` only once the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, _FILE_MODE)
        with os.fdopen(fd, "wb") if binary else os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_write(path) as handle:
        handle.write(text)
    return Path(path)
