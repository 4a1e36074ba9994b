"""Request/result records shared by the prompts, the backends, the cache and the runner."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass


def sentence_sha1(sentence: str) -> str:
    """The sentence is stored and exported only as this hash (the text stays with the data)."""
    return hashlib.sha1(sentence.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ExplanationRequest:
    """Explain ``entity`` as it is used in ``sentence``.

    ``partner`` is the other entity of the pair; it is set only when the prompt template shows it
    (then it is part of the cache key), otherwise it is ``None`` so requests dedupe per sentence.
    Nothing derived from the gold relation (or MNRE's entity types, which are part of it) belongs here.
    """

    entity: str
    sentence: str
    partner: str | None = None

    @property
    def sentence_sha1(self) -> str:
        return sentence_sha1(self.sentence)


@dataclass(frozen=True)
class ExplanationResult:
    """What one backend produced for one request.

    Exactly one of three outcomes: ``text`` set (explained), ``miss`` (the backend has nothing to say,
    e.g. no Wikipedia article: the next backend of the chain is asked) or ``error`` set (it failed:
    reported, kept out of the cache and retried on the next run).
    """

    request: ExplanationRequest
    text: str | None = None
    error: str | None = None
    miss: bool = False
    latency_s: float = 0.0
    tokens: int | None = None

    @property
    def ok(self) -> bool:
        return self.text is not None
