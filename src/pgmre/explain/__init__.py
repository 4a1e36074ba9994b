"""Entity explanations (PG-MRE's first step): prompts, backends (openai, local, wikipedia), SQLite cache.

``explanations_for(samples, cfg)`` is what training and serving call: the (head, tail) explanation of
every sample, from the cache, generating what is missing with the configured backend chain.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from pgmre.explain.backends import Backend, BackendUnavailable, build_backends, parse_chain
from pgmre.explain.cache import CacheError, ExplanationCache
from pgmre.explain.prompts import TEMPLATES, PromptTemplate, get_template
from pgmre.explain.runner import Explainer, Failure, RunReport, import_artifact_once
from pgmre.explain.types import ExplanationRequest, ExplanationResult, sentence_sha1

if TYPE_CHECKING:
    from pgmre.config import ExplainConfig
    from pgmre.data.types import Sample


class ExplanationsMissing(RuntimeError):
    """Some samples have no explanation (not cached, failed, or no backend of the chain had one)."""


def requests_for(samples: Sequence[Sample]) -> list[ExplanationRequest]:
    """Two requests per sample (head, tail), each showing the other entity as partner.

    Only names and the post's text are used: never the relation label (MNRE's entity types are part of it).
    """
    requests = []
    for sample in samples:
        text = sample.text
        requests.append(ExplanationRequest(sample.head.name, text, sample.tail.name))
        requests.append(ExplanationRequest(sample.tail.name, text, sample.head.name))
    return requests


def explanations_for(
    samples: Sequence[Sample],
    cfg: ExplainConfig,
    generate: bool = True,
    progress: bool = False,
    backends: list[Backend] | None = None,
) -> list[tuple[str, str]]:
    """(head, tail) explanation of every sample, in order.

    Imports ``cfg.artifact`` into the cache on first use. With ``generate=False`` nothing is generated
    and anything missing raises ``ExplanationsMissing`` saying how many and which. ``backends``: a
    long-lived chain (a server's: models stay loaded between calls), used and left open; by default the
    chain is built from ``cfg`` and closed here.
    """
    pairs = _explained(samples, cfg, generate, progress, backends)
    return [(head[0], tail[0]) for head, tail in pairs]


def explanation_sources(samples: Sequence[Sample], cfg: ExplainConfig) -> list[tuple[str, str]]:
    """(head, tail) name of the backend that wrote each sample's cached explanations (nothing generated).

    Lets an analysis split samples by source, e.g. Wikipedia extracts against LLM text.
    """
    pairs = _explained(samples, cfg, generate=False, progress=False, backends=None)
    return [(head[1], tail[1]) for head, tail in pairs]


def _explained(
    samples: Sequence[Sample],
    cfg: ExplainConfig,
    generate: bool,
    progress: bool,
    backends: list[Backend] | None,
) -> list[tuple[tuple[str, str], tuple[str, str]]]:
    """((text, backend) of the head, (text, backend) of the tail) per sample; see ``explanations_for``."""
    with ExplanationCache(cfg.cache) as cache:
        if cfg.artifact:
            import_artifact_once(cache, cfg.artifact)
        explainer = Explainer(cfg, cache, backends)
        try:
            requests = requests_for(samples)
            report = explainer.run(requests, generate=generate, progress=progress)
        finally:
            if backends is None:
                explainer.close()
    normalise = explainer.template.normalise
    explained = report.explained
    absent = [(i, r) for i, r in enumerate(requests) if normalise(r) not in explained]
    if absent:
        unique = {normalise(r) for _, r in absent}
        first = "\n".join(
            f"  {samples[i // 2].where}: {'tail' if i % 2 else 'head'} {r.entity!r}" for i, r in absent[:10]
        )
        why = (
            f"{len(report.failed)} failed (retried on the next run), {len(report.missing)} had no explanation"
            if generate
            else "generation is off; run `pgmre explain run --data ...` or set explain.artifact"
        )
        raise ExplanationsMissing(
            f"{len(unique)} of {report.total} unique explanations ({len(absent)} of {len(requests)} entity "
            f"mentions) are missing from {cfg.cache} for backend chain {cfg.backend!r}, template "
            f"{cfg.template}: {why}. First ones:\n{first}"
        )
    found = [explained[normalise(r)] for r in requests]
    return list(zip(found[0::2], found[1::2], strict=True))


__all__ = [
    "TEMPLATES",
    "Backend",
    "BackendUnavailable",
    "CacheError",
    "Explainer",
    "ExplanationCache",
    "ExplanationRequest",
    "ExplanationResult",
    "ExplanationsMissing",
    "Failure",
    "PromptTemplate",
    "RunReport",
    "build_backends",
    "explanation_sources",
    "explanations_for",
    "get_template",
    "import_artifact_once",
    "parse_chain",
    "requests_for",
    "sentence_sha1",
]
