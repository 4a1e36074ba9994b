"""The entity's own name as its "explanation": a knowledge-free control for ablations.

Training ``+Ent`` with this backend keeps the architecture of eqs. (1)-(4) and (8)-(10) but removes what
an LLM knows about the entity, so a comparison with LLM explanations separates the value of their
content from the effect of the extra modules (docs/results.md).
"""

from __future__ import annotations

from pgmre.explain.backends.base import Backend
from pgmre.explain.types import ExplanationRequest, ExplanationResult


class NameBackend(Backend):
    name = "name"
    model = "-"
    template = "-"
    chunk_size = 4096

    def __init__(self) -> None:
        self.settings = {"version": 1}

    def explain(self, requests: list[ExplanationRequest]) -> list[ExplanationResult]:
        return [ExplanationResult(r, text=r.entity.strip() or r.entity) for r in requests]
