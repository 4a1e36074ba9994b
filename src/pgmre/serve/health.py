"""Whether the server can answer: a damaged explanation cache makes ``/health`` say so (503), instead of
``ok`` followed by failing predictions."""

from __future__ import annotations

import threading
from pathlib import Path

from pgmre.explain.cache import CacheCorrupt
from pgmre.explain.repair import integrity_problem


class ExplanationCacheHealth:
    """The run's explanation cache: damaged or not, checked again whenever the file changes.

    SQLite's ``integrity_check`` reads the whole file, so it runs when the file is new to this object or
    has changed (inode, size, modification time; a repaired cache is a new file), not on every
    ``/health`` call. A request that meets a damaged cache reports it here too.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._checked: tuple[int, int, int] | None = None
        self._problem: str | None = None
        self._lock = threading.Lock()

    def _signature(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat() if self.path is not None else None
        except OSError:
            return None
        return (stat.st_ino, stat.st_size, stat.st_mtime_ns) if stat is not None else None

    def report(self, err: CacheCorrupt) -> None:
        """A request found the cache damaged: unhealthy until the file changes (is repaired)."""
        with self._lock:
            self._problem = str(err)
            self._checked = self._signature()

    def problem(self) -> str | None:
        """Why the cache cannot be used (its file, the damage and the repair command), or None."""
        if self.path is None:
            return None
        with self._lock:
            signature = self._signature()
            if signature is None:  # no cache yet: it is created on first use
                self._checked, self._problem = None, None
            elif signature != self._checked:
                found = integrity_problem(self.path)
                self._problem = str(CacheCorrupt(self.path, f"integrity check: {found}")) if found else None
                self._checked = signature
            return self._problem
