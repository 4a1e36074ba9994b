"""SQLite cache of explanations: one row per (backend, model, template, entity, sentence, partner,
settings), WAL mode, committed in small batches so that a killed run loses nothing that finished.

Sentences are stored only as SHA-1 hashes; export/import to JSONL(.gz) carries the same fields, so a
precomputed artifact can be shared without the posts' text.

A damaged file (a disk error, a copy cut short, bytes overwritten) is found by SQLite's
``quick_check`` the first time a process opens it, or by the first query SQLite reports as corrupt;
either raises :class:`CacheCorrupt` naming the file and ``pgmre explain repair``
(:mod:`pgmre.explain.repair`). Nothing is written into a damaged file.
"""

from __future__ import annotations

import contextlib
import functools
import gzip
import hashlib
import io
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Concatenate, ParamSpec, TypeVar, cast

from pgmre.data.parsing import ParseError, parse_json
from pgmre.explain.types import ExplanationRequest, ExplanationResult
from pgmre.outputs import atomic_write

SCHEMA = """
CREATE TABLE IF NOT EXISTS explanations (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL, model TEXT NOT NULL, template TEXT NOT NULL, settings TEXT NOT NULL,
    entity TEXT NOT NULL, sentence_sha1 TEXT NOT NULL, partner TEXT,
    explanation TEXT NOT NULL, latency_s REAL, tokens INTEGER, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS failures (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL, model TEXT NOT NULL, template TEXT NOT NULL, settings TEXT NOT NULL,
    entity TEXT NOT NULL, sentence_sha1 TEXT NOT NULL, partner TEXT,
    error TEXT NOT NULL, attempts INTEGER NOT NULL, updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

EXPORT_FIELDS = (
    "entity",
    "sentence_sha1",
    "partner",
    "explanation",
    "backend",
    "model",
    "template",
    "settings",
    "tokens",
)
REQUIRED_FIELDS = ("entity", "sentence_sha1", "explanation", "backend", "model", "template", "settings")


class CacheError(ValueError):
    """An unreadable cache or a bad import file (names file, line and field)."""


class CacheCorrupt(CacheError):
    """The SQLite file is damaged; ``path`` is the file. Run ``pgmre explain repair`` on it."""

    def __init__(self, path: str | Path, detail: str) -> None:
        self.path = Path(path)
        super().__init__(
            f"{path}: the explanation cache is damaged ({detail}); run `pgmre explain repair --cache {path} "
            "[--config CONFIG]` to keep its readable rows in a fresh file (the damaged one is kept as a "
            "backup) and re-import the config's explain.artifact"
        )


def is_corruption(err: sqlite3.DatabaseError) -> bool:
    """Whether SQLite says the file itself is damaged (not locked, read-only or full)."""
    name = getattr(err, "sqlite_errorname", "") or ""
    text = str(err)
    return (
        name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB"))
        or "malformed" in text
        or "not a database" in text
    )


# Resolved path -> (inode, mtime, size) of the file as this process last found it healthy. A server opens
# the cache per batch and the check reads the whole file (about 80 ms for the 19,026 bundled rows), so it
# runs again only when the file changed (a write, a repair, damage from outside).
_CHECKED: dict[str, tuple[int, int, int]] = {}

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _guarded(
    method: Callable[Concatenate[ExplanationCache, _P], _R],
) -> Callable[Concatenate[ExplanationCache, _P], _R]:
    """SQLite errors of a cache method as :class:`CacheCorrupt` / :class:`CacheError` naming the file."""

    @functools.wraps(method)
    def wrapper(self: ExplanationCache, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return method(self, *args, **kwargs)
        except sqlite3.DatabaseError as err:
            raise self.error(err) from err

    return wrapper


@dataclass(frozen=True)
class Producer:
    """What made an explanation: everything of the key except the request itself."""

    backend: str
    model: str
    template: str
    settings: dict[str, Any]

    @property
    def settings_json(self) -> str:
        return json.dumps(self.settings, sort_keys=True, separators=(",", ":"))


def cache_key(producer: Producer, entity: str, sentence_sha1: str, partner: str | None) -> str:
    payload = json.dumps(
        [
            producer.backend,
            producer.model,
            producer.template,
            producer.settings_json,
            entity,
            sentence_sha1,
            partner,
        ],
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def request_key(producer: Producer, request: ExplanationRequest) -> str:
    return cache_key(producer, request.entity, request.sentence_sha1, request.partner)


@dataclass(frozen=True)
class CachedExplanation:
    key: str
    backend: str
    model: str
    template: str
    explanation: str
    latency_s: float | None
    tokens: int | None


class ExplanationCache:
    """One SQLite file; safe to share between processes (WAL, busy timeout).

    Opening runs SQLite's ``quick_check`` once per process and file; a damaged file raises
    :class:`CacheCorrupt` (so ``explain run`` never writes into one), as does any later query that
    SQLite reports as corrupt."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.db = sqlite3.connect(self.path, timeout=60, isolation_level=None)
        except sqlite3.DatabaseError as err:
            raise CacheError(f"{self.path}: cannot open the explanation cache: {err}") from err
        try:
            self._check_once()  # first: even switching a damaged file to WAL would write into it
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(SCHEMA)
        except sqlite3.DatabaseError as err:
            self.db.close()
            raise self.error(err) from err
        except CacheError:
            self.db.close()
            raise

    def _check_once(self) -> None:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return  # a new cache: nothing to check yet
        stat = self.path.stat()
        stamp = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if _CHECKED.get(str(self.path.resolve())) == stamp:
            return
        found = [row[0] for row in self.db.execute("PRAGMA quick_check(3)")]
        if found != ["ok"]:
            detail = " ".join(" ".join(map(str, found)).split())  # SQLite's report spans lines
            raise CacheCorrupt(self.path, f"integrity check: {detail[:300]}")
        _CHECKED[str(self.path.resolve())] = stamp

    def error(self, err: sqlite3.DatabaseError) -> CacheError:
        """The cache's exception for a SQLite error: :class:`CacheCorrupt` when the file is damaged."""
        if is_corruption(err):
            _CHECKED.pop(str(self.path.resolve()), None)
            return CacheCorrupt(self.path, str(err))
        return CacheError(f"{self.path}: explanation cache: {err}")

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> ExplanationCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- lookups -----------------------------------------------------------------------------------
    @_guarded
    def get_many(self, keys: Iterable[str]) -> dict[str, CachedExplanation]:
        found: dict[str, CachedExplanation] = {}
        keys = list(dict.fromkeys(keys))
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.db.execute(
                "SELECT key, backend, model, template, explanation, latency_s, tokens FROM explanations "
                f"WHERE key IN ({','.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                found[row[0]] = CachedExplanation(*row)
        return found

    @_guarded
    def failures(self, limit: int | None = None) -> list[dict[str, Any]]:
        query = "SELECT backend, model, template, entity, sentence_sha1, error, attempts FROM failures ORDER BY updated"
        rows = self.db.execute(query + (f" LIMIT {int(limit)}" if limit else ""))
        names = ("backend", "model", "template", "entity", "sentence_sha1", "error", "attempts")
        return [dict(zip(names, row, strict=True)) for row in rows]

    @_guarded
    def count(self) -> int:
        return int(self.db.execute("SELECT COUNT(*) FROM explanations").fetchone()[0])

    # -- writes ------------------------------------------------------------------------------------
    @_guarded
    def record(self, producer: Producer, results: list[ExplanationResult]) -> None:
        """Store one batch of results in one transaction: explanations replace earlier failures,
        failures count their attempts; misses are not stored (the next backend is asked)."""
        now = time.time()
        common = (producer.backend, producer.model, producer.template, producer.settings_json)
        with self.transaction() as db:
            for result in results:
                req = result.request
                key = request_key(producer, req)
                ident = (*common, req.entity, req.sentence_sha1, req.partner)
                if result.text is not None:
                    db.execute(
                        "INSERT OR REPLACE INTO explanations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                        (key, *ident, result.text, result.latency_s, result.tokens, now),
                    )
                    db.execute("DELETE FROM failures WHERE key = ?", (key,))
                elif result.error is not None:
                    db.execute(
                        "INSERT INTO failures VALUES (?,?,?,?,?,?,?,?,?,1,?) ON CONFLICT(key) DO UPDATE SET "
                        "error = excluded.error, attempts = attempts + 1, updated = excluded.updated",
                        (key, *ident, result.error, now),
                    )

    @_guarded
    def get_meta(self, name: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else str(row[0])

    @_guarded
    def set_meta(self, name: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (name, value))

    # -- reporting ---------------------------------------------------------------------------------
    @_guarded
    def stats(self) -> dict[str, Any]:
        groups = self.db.execute(
            "SELECT backend, model, template, COUNT(*), AVG(latency_s), AVG(tokens), AVG(LENGTH(explanation)) "
            "FROM explanations GROUP BY backend, model, template ORDER BY backend, model, template"
        ).fetchall()
        failures = self.db.execute(
            "SELECT backend, model, template, COUNT(*), SUM(attempts) FROM failures GROUP BY backend, model, template"
        ).fetchall()
        return {
            "path": str(self.path),
            "rows": self.count(),
            "groups": [
                {
                    "backend": b,
                    "model": m,
                    "template": t,
                    "rows": n,
                    "mean_latency_s": lat,
                    "mean_tokens": tok,
                    "mean_chars": ch,
                }
                for b, m, t, n, lat, tok, ch in groups
            ],
            "failures": [
                {"backend": b, "model": m, "template": t, "items": n, "attempts": a}
                for b, m, t, n, a in failures
            ],
        }

    # -- export / import ---------------------------------------------------------------------------
    @_guarded
    def export_jsonl(self, path: str | Path) -> int:
        """Write every explanation (sorted, gzip without a timestamp when ``path`` ends in .gz, so the
        same cache gives the same bytes); returns the number of rows."""
        path = Path(path)
        rows = self.db.execute(
            f"SELECT {', '.join(EXPORT_FIELDS)} FROM explanations "
            "ORDER BY entity, sentence_sha1, backend, model, template, settings, partner"
        )
        n = 0
        with atomic_write(path, binary=True) as raw, _text_writer(raw, compress=path.suffix == ".gz") as out:
            for row in rows:
                record = dict(zip(EXPORT_FIELDS, row, strict=True))
                record["settings"] = json.loads(record["settings"])
                if record["partner"] is None:
                    del record["partner"]
                out.write(json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n")
                n += 1
        return n

    @_guarded
    def import_jsonl(self, path: str | Path) -> tuple[int, int]:
        """Add the rows of an export (validated first: a bad line stops the import and names file, line
        and field; nothing is written then). Existing rows are kept. Returns (read, added)."""
        path = Path(path)
        records = list(_read_export(path))
        before = self.count()
        now = time.time()
        with self.transaction() as db:
            for rec in records:
                producer = Producer(rec["backend"], rec["model"], rec["template"], rec["settings"])
                key = cache_key(producer, rec["entity"], rec["sentence_sha1"], rec.get("partner"))
                db.execute(
                    "INSERT OR IGNORE INTO explanations VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        key, producer.backend, producer.model, producer.template, producer.settings_json,
                        rec["entity"], rec["sentence_sha1"], rec.get("partner"), rec["explanation"],
                        None, rec.get("tokens"), now,
                    ),
                )  # fmt: skip
        return len(records), self.count() - before


@contextlib.contextmanager
def _text_writer(raw: IO[bytes], compress: bool) -> Iterator[IO[str]]:
    """Text onto ``raw`` (left open); gzip with no name and mtime 0 so identical content gives identical
    bytes."""
    if not compress:
        text = io.TextIOWrapper(raw, encoding="utf-8")
        yield text
        text.detach()  # flushed; ``raw`` stays open for its owner
        return
    with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as packed:
        text = io.TextIOWrapper(cast(IO[bytes], packed), encoding="utf-8")
        yield text
        text.detach()


def _read_export(path: Path) -> Iterator[dict[str, Any]]:
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, 1):
                if line.strip():
                    yield _validate_record(path, number, line)
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise CacheError(f"{path}: cannot read: {err}") from err


def _validate_record(path: Path, number: int, line: str) -> dict[str, Any]:
    where = f"{path}:{number}"
    try:
        record = parse_json(line)
    except ParseError as err:
        raise CacheError(f"{where}: not valid JSON: {err}") from None
    if not isinstance(record, dict):
        raise CacheError(f"{where}: expected a JSON object")
    for field in REQUIRED_FIELDS:
        if field not in record:
            raise CacheError(f"{where}: field {field!r} is missing")
        expected = dict if field == "settings" else str
        if not isinstance(record[field], expected):
            raise CacheError(f"{where}: field {field!r} must be a {expected.__name__}, got {record[field]!r}")
    if record.get("partner") is not None and not isinstance(record["partner"], str):
        raise CacheError(f"{where}: field 'partner' must be a string or absent")
    if record.get("tokens") is not None and not isinstance(record["tokens"], int):
        raise CacheError(f"{where}: field 'tokens' must be an integer or null")
    if len(record["sentence_sha1"]) != 40:
        raise CacheError(f"{where}: field 'sentence_sha1' must be a 40-character SHA-1 hex digest")
    return record
