"""Progress of long steps: a tqdm bar on a terminal, a log line every half minute otherwise.

A bar redrawn with carriage returns is unreadable in a log file or a CI job, and a step with no output
for minutes looks hung. :func:`progress_bar` is what every step that can run longer than a few seconds
uses (explanations, cold feature caches, training epochs, evaluation, ``pgmre predict``): the same
counts, rate and ETA either way.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger("pgmre.progress")

#: Seconds between two log lines when stderr is not a terminal.
LOG_INTERVAL_S = 30.0
_LOG_FORMAT = "{desc}: {n_fmt}/{total_fmt} ({percentage:.0f}%) [{elapsed}<{remaining}, {rate_fmt}{postfix}]"


class _Discard:
    """Where the logged bar's own writes go: its lines are sent to the log instead."""

    def write(self, text: str) -> int:
        return len(text)

    def flush(self) -> None:
        pass


class LoggedProgress(tqdm):  # type: ignore[type-arg]
    """tqdm's counting, rate and ETA, reported as a log line at the start, every ``interval`` seconds
    and at the end, instead of a redrawn bar."""

    def __init__(self, *args: Any, interval: float = LOG_INTERVAL_S, **kwargs: Any) -> None:
        self._interval = interval
        self._last_logged = -float("inf")
        self._finished = False
        kwargs.setdefault("file", _Discard())
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg == "" or self._finished:  # tqdm clearing its line, or after the final report
            return True
        now = time.monotonic()
        if now - self._last_logged >= self._interval:
            self._last_logged = now
            self._log(msg)
        return True

    def close(self) -> None:
        if not self.disable and not self._finished:
            self._log(None)
            self._finished = True
        super().close()

    def _log(self, msg: str | None) -> None:
        meter = self.format_dict
        if meter["total"]:
            meter["bar_format"] = _LOG_FORMAT
        log.info("%s", msg or self.format_meter(**meter))


def progress_bar(
    iterable: Iterable[Any] | None = None,
    *,
    desc: str,
    total: float | None = None,
    unit: str = "it",
    enabled: bool = True,
    **kwargs: Any,
) -> tqdm:  # type: ignore[type-arg]
    """A tqdm bar (``enabled``) on a terminal, a :class:`LoggedProgress` otherwise; use as tqdm."""
    if not enabled:
        return tqdm(iterable, total=total, disable=True)
    if sys.stderr.isatty():
        kwargs.setdefault("dynamic_ncols", True)
        return tqdm(iterable, desc=desc, total=total, unit=unit, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    return LoggedProgress(iterable, desc=desc, total=total, unit=unit, **kwargs)
