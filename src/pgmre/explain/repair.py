"""``pgmre explain repair``: keep what a damaged explanation cache can still give, in a fresh file.

Every row that SQLite can still read is copied into a new database, table by table, and checked: an
explanation or failure row is kept only when its key is the hash of its own fields (so a row whose bytes
were overwritten is dropped, not trusted). Rows behind a damaged page are read one rowid at a time
around it. The configured artifact (the bundled explanations) is imported again, the new file replaces
the damaged one with ``os.replace``, and the damaged file is kept next to it as ``<name>.damaged-<time>``.
Run it while no other process uses the cache.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgmre.explain.cache import ExplanationCache, Producer, cache_key
from pgmre.explain.runner import import_artifact_once

#: Consecutive unreadable or absent rowids after which a probe around damage stops.
MAX_GAP = 10_000

_COLUMNS = {
    "explanations": (
        "key, backend, model, template, settings, entity, sentence_sha1, partner, explanation, latency_s, "
        "tokens, created"
    ),
    "failures": "key, backend, model, template, settings, entity, sentence_sha1, partner, error, attempts, updated",
    "meta": "name, value",
}


@dataclass
class RepairReport:
    """What a repair found and did; ``backup`` is None when the cache was not damaged (nothing done)."""

    path: Path
    damage: str | None
    backup: Path | None = None
    kept: dict[str, int] = field(default_factory=dict)
    rejected: int = 0  # rows read but failing their checks (bad text, key not matching the fields)
    imported: int = 0  # explanations added from the artifact

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "path": str(self.path), "backup": str(self.backup) if self.backup else None}


def integrity_problem(path: Path) -> str | None:
    """SQLite's full ``integrity_check`` of ``path``: None when it says ok, else what it found."""
    try:
        db = sqlite3.connect(path)
        try:
            found = [str(row[0]) for row in db.execute("PRAGMA integrity_check(5)")]
        finally:
            db.close()
    except sqlite3.DatabaseError as err:
        return str(err)
    return None if found == ["ok"] else "; ".join(found)


def _decoded(row: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """A row read with bytes for text, as str; None when a text column is not UTF-8."""
    try:
        return tuple(v.decode("utf-8") if isinstance(v, bytes) else v for v in row)
    except UnicodeDecodeError:
        return None


def _consistent(table: str, row: tuple[Any, ...]) -> bool:
    """Whether a salvaged row is whole: its types, and for keyed rows the key hashing its own fields."""
    if table == "meta":
        return all(isinstance(v, str) for v in row)
    key, backend, model, template, settings, entity, sha1, partner, text = row[:9]
    if not all(isinstance(v, str) for v in (key, backend, model, template, settings, entity, sha1, text)):
        return False
    if partner is not None and not isinstance(partner, str):
        return False
    try:
        parsed = json.loads(settings)
    except ValueError:
        return False
    if not isinstance(parsed, dict):
        return False
    return cache_key(Producer(backend, model, template, parsed), entity, sha1, partner) == key


def _rows(db: sqlite3.Connection, table: str) -> Iterator[tuple[Any, ...] | None]:
    """Every row SQLite can read (None for one it reads but cannot decode): a scan in rowid order, and
    after a damaged page, rowid by rowid until :data:`MAX_GAP` in a row are missing."""
    columns = _COLUMNS[table]
    last = 0
    try:
        for rowid, *row in db.execute(f"SELECT rowid, {columns} FROM {table} ORDER BY rowid"):
            last = rowid
            yield _decoded(tuple(row))
        return
    except sqlite3.DatabaseError:
        pass
    try:
        top = db.execute(f"SELECT max(rowid) FROM {table}").fetchone()[0]
    except sqlite3.DatabaseError:
        top = None
    rowid, gap = last + 1, 0
    while gap < MAX_GAP and (top is None or rowid <= top):
        try:
            found = db.execute(f"SELECT {columns} FROM {table} WHERE rowid = ?", (rowid,)).fetchone()
        except sqlite3.DatabaseError:
            found = None
        if found is None:
            gap += 1
        else:
            gap = 0
            yield _decoded(tuple(found))
        rowid += 1


def _salvage(source: Path, store: ExplanationCache, report: RepairReport) -> None:
    try:
        damaged = sqlite3.connect(source)
    except sqlite3.DatabaseError:
        return
    damaged.text_factory = bytes  # undecodable text is one rejected row, not an aborted scan
    try:
        with store.transaction() as db:
            for table, columns in _COLUMNS.items():
                kept = 0
                marks = ",".join("?" * len(columns.split(",")))
                for row in _rows(damaged, table):
                    if row is None or not _consistent(table, row):
                        report.rejected += 1
                        continue
                    if table == "meta" and str(row[0]).startswith("artifact:"):
                        continue  # the artifact is imported again below, whatever was recorded
                    try:
                        db.execute(f"INSERT OR IGNORE INTO {table} ({columns}) VALUES ({marks})", row)
                    except sqlite3.IntegrityError:  # e.g. a NULL where the schema has NOT NULL
                        report.rejected += 1
                        continue
                    kept += 1
                report.kept[table] = kept
    finally:
        damaged.close()


def _files(path: Path) -> list[Path]:
    """A SQLite file and its journal (the write-ahead log holds committed rows not yet in the file)."""
    return [path, Path(f"{path}-wal"), Path(f"{path}-shm")]


def _copy(source: Path, target: Path) -> None:
    for src, dst in zip(_files(source), _files(target), strict=True):
        dst.unlink(missing_ok=True)
        if src.exists() and not src.name.endswith("-shm"):
            shutil.copy2(src, dst)


def repair_cache(path: str | Path, artifact: str | Path | None = None, force: bool = False) -> RepairReport:
    """Rebuild a damaged cache from its readable rows and ``artifact``; a healthy one is left alone
    (``force``: rebuild anyway). The damaged file is only ever read through a scratch copy, so the
    backup is byte for byte what was found."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such explanation cache")
    scratch = path.with_name(f".{path.name}.scratch-{os.getpid()}.tmp")
    fresh = path.with_name(f".{path.name}.repair-{os.getpid()}.tmp")
    _copy(path, scratch)
    try:
        report = RepairReport(path, integrity_problem(scratch))
        if report.damage is None and not force:
            return report
        report.backup = path.with_name(f"{path.name}.damaged-{time.strftime('%Y%m%d-%H%M%S')}")
        _copy(path, report.backup)
        for leftover in _files(fresh):
            leftover.unlink(missing_ok=True)
        with ExplanationCache(fresh) as store:
            _salvage(scratch, store, report)
            if artifact:
                report.imported = import_artifact_once(store, artifact)
            store.db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to move into place
        for stale in _files(path)[1:]:  # a stale journal must never be replayed onto the new file
            stale.unlink(missing_ok=True)
        os.replace(fresh, path)
    finally:
        for leftover in _files(scratch) + _files(fresh):
            leftover.unlink(missing_ok=True)
    return report
