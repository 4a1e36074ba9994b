"""The one small interface every explanation backend implements."""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

from pgmre.explain.types import ExplanationRequest, ExplanationResult


class BackendUnavailable(RuntimeError):
    """A backend cannot run here (missing optional package, missing model files, no API key...)."""


def file_sha256(path: str | Path) -> str:
    """SHA-256 hex digest of a file's bytes, streamed: a cache-key part independent of its name."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


class Backend(ABC):
    """Turns requests into results, one result per request, in order.

    ``name``, ``model``, ``template`` and ``settings`` identify what the backend produces: they are part
    of the cache key, so they must be known without loading anything heavy (load lazily in ``explain``).
    ``chunk_size`` is how many requests the runner hands over at once; results are committed to the
    cache after every chunk, so it bounds the work a crash can lose.
    """

    name: str
    model: str
    template: str
    settings: dict[str, Any]
    chunk_size: int = 64

    @abstractmethod
    def explain(self, requests: list[ExplanationRequest]) -> list[ExplanationResult]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release models, clients or files."""
