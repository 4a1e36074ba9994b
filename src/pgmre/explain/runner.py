"""The backend chain: cache lookups in chain order, generation of what is missing, small commits."""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pgmre.explain.backends import build_backends
from pgmre.explain.backends.base import Backend
from pgmre.explain.cache import ExplanationCache, Producer, request_key
from pgmre.explain.prompts import get_template
from pgmre.explain.types import ExplanationRequest, ExplanationResult
from pgmre.progress import progress_bar

if TYPE_CHECKING:
    from pgmre.config import ExplainConfig


def producer_of(backend: Backend) -> Producer:
    return Producer(backend.name, backend.model, backend.template, backend.settings)


@dataclass(frozen=True)
class Failure:
    request: ExplanationRequest
    backend: str
    error: str


@dataclass
class RunReport:
    """What a run did with its unique requests: each one is explained, failed or missing."""

    total: int = 0
    cache_hits: int = 0
    generated: Counter[str] = field(default_factory=Counter)
    explained: dict[ExplanationRequest, tuple[str, str]] = field(default_factory=dict)  # -> (text, backend)
    failed: list[Failure] = field(default_factory=list)
    missing: list[ExplanationRequest] = field(default_factory=list)

    @property
    def by_backend(self) -> Counter[str]:
        return Counter(backend for _, backend in self.explained.values())


def _chunks(items: list[ExplanationRequest], size: int) -> Iterator[list[ExplanationRequest]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Explainer:
    """Explains requests with a fallback chain of backends (e.g. ``wikipedia,local``).

    For every backend in order: take what the cache already holds for it, then (when generating) ask it
    for the rest. A *miss* (the backend has nothing, e.g. no Wikipedia article) falls through to the next
    backend; a *failure* does not (it is recorded and retried on the next run, so the data never depends
    on which server happened to be up). Results are committed after every chunk.
    """

    def __init__(
        self, cfg: ExplainConfig, cache: ExplanationCache, backends: list[Backend] | None = None
    ) -> None:
        self.cfg = cfg
        self.cache = cache
        self.template = get_template(cfg.template)
        self.backends = backends if backends is not None else build_backends(cfg)

    def unique_requests(self, requests: Iterable[ExplanationRequest]) -> list[ExplanationRequest]:
        """Deduplicated requests, the partner dropped where the template does not show it."""
        return list(dict.fromkeys(self.template.normalise(r) for r in requests))

    def run(
        self, requests: Iterable[ExplanationRequest], generate: bool = True, progress: bool = False
    ) -> RunReport:
        pending = self.unique_requests(requests)
        report = RunReport(total=len(pending))
        for position, backend in enumerate(self.backends):
            producer = producer_of(backend)
            keys = {request: request_key(producer, request) for request in pending}
            hits = self.cache.get_many(keys.values())
            todo = []
            for request in pending:
                hit = hits.get(keys[request])
                if hit is None:
                    todo.append(request)
                else:
                    report.explained[request] = (hit.explanation, backend.name)
            report.cache_hits += len(pending) - len(todo)
            if not generate:
                pending = todo
                continue
            pending = self._generate(
                backend, todo, report, last=position == len(self.backends) - 1, progress=progress
            )
        report.missing = pending
        return report

    def _generate(
        self, backend: Backend, todo: list[ExplanationRequest], report: RunReport, last: bool, progress: bool
    ) -> list[ExplanationRequest]:
        """Ask one backend for ``todo`` chunk by chunk, committing each chunk; returns its misses.

        One progress bar per backend, so its rate and ETA are that backend's (cache hits and fast
        backends do not distort them)."""
        producer = producer_of(backend)
        misses: list[ExplanationRequest] = []
        with progress_bar(
            total=len(todo), unit="ent", desc=f"explain [{backend.name}]", enabled=progress and bool(todo),
            mininterval=1.0,
        ) as bar:  # fmt: skip
            bar.set_postfix(cache_hits=report.cache_hits, failed=len(report.failed))
            for chunk in _chunks(todo, backend.chunk_size):
                results = backend.explain(chunk)
                if len(results) != len(chunk):
                    raise RuntimeError(
                        f"backend {backend.name} returned {len(results)} results for {len(chunk)}"
                    )
                if last:  # nobody left to ask: a miss is a failure to report (and retry next time)
                    results = [self._miss_to_failure(r) for r in results]
                self.cache.record(producer, results)
                for result in results:
                    if result.text is not None:
                        report.explained[result.request] = (result.text, backend.name)
                        report.generated[backend.name] += 1
                    elif result.error is not None:
                        report.failed.append(Failure(result.request, backend.name, result.error))
                    else:
                        misses.append(result.request)
                bar.update(len(results))
                bar.set_postfix(
                    cache_hits=report.cache_hits, new=report.generated[backend.name], misses=len(misses),
                    failed=len(report.failed),
                )  # fmt: skip
        return misses

    def _miss_to_failure(self, result: ExplanationResult) -> ExplanationResult:
        if not result.miss:
            return result
        chain = ",".join(b.name for b in self.backends)
        return ExplanationResult(result.request, error=f"no backend of the chain {chain} has an explanation")

    def close(self) -> None:
        for backend in self.backends:
            backend.close()


# (resolved artifact path, mtime_ns, size) -> SHA-256: each served batch and each split looks the artifact
# up; it is hashed once per process (and again only when the file changes).
_ARTIFACT_DIGESTS: dict[tuple[str, int, int], str] = {}


def _artifact_digest(path: Path) -> str:
    stat = path.stat()
    memo = (str(path.resolve()), stat.st_mtime_ns, stat.st_size)
    digest = _ARTIFACT_DIGESTS.get(memo)
    if digest is None:
        with path.open("rb") as handle:
            digest = hashlib.file_digest(handle, "sha256").hexdigest()
        _ARTIFACT_DIGESTS[memo] = digest
    return digest


def import_artifact_once(cache: ExplanationCache, artifact: str | Path) -> int:
    """Import a JSONL(.gz) export into the cache unless this exact file was imported before."""
    path = Path(artifact)
    try:
        digest = _artifact_digest(path)
    except OSError as err:
        raise FileNotFoundError(f"explain.artifact {path}: cannot read: {err}") from err
    marker = f"artifact:{digest}"
    if cache.get_meta(marker) is not None:
        return 0
    _, added = cache.import_jsonl(path)
    cache.set_meta(marker, str(path))
    return added
