"""Versioned prompt templates for entity explanations.

A template version is part of every cache key, so editing a template's wording means adding a new
version, never changing an existing one. ``v1`` shows only the entity and the post: explanations are
then shared by every pair of the post that mentions the entity, and the partner is not in the key.
``v2`` also names the other entity of the pair; with it the partner is part of the key.
No template may use the relation label or MNRE's entity types (they are part of the label).
"""

from __future__ import annotations

from dataclasses import dataclass

from pgmre.explain.types import ExplanationRequest


@dataclass(frozen=True)
class PromptTemplate:
    version: str
    system: str
    user: str
    uses_partner: bool = False

    def messages(self, request: ExplanationRequest) -> list[dict[str, str]]:
        """Chat messages (system + user) for one request."""
        if self.uses_partner and request.partner is None:
            raise ValueError(f"template {self.version} needs the partner entity of {request.entity!r}")
        user = self.user.format(entity=request.entity, sentence=request.sentence, partner=request.partner)
        return [{"role": "system", "content": self.system}, {"role": "user", "content": user}]

    def normalise(self, request: ExplanationRequest) -> ExplanationRequest:
        """Drop the partner when this template does not show it, so such requests dedupe."""
        if not self.uses_partner and request.partner is not None:
            return ExplanationRequest(request.entity, request.sentence, None)
        return request


_SYSTEM = "Give a short encyclopedic definition of the entity."

TEMPLATES: dict[str, PromptTemplate] = {
    "v1": PromptTemplate(version="v1", system=_SYSTEM, user='Post: "{sentence}"\nWho or what is {entity}?'),
    "v2": PromptTemplate(
        version="v2",
        system=_SYSTEM,
        user='Post: "{sentence}"\nWho or what is {entity} (mentioned with {partner})?',
        uses_partner=True,
    ),
}


def get_template(version: str) -> PromptTemplate:
    try:
        return TEMPLATES[version]
    except KeyError:
        raise ValueError(f"unknown prompt template {version!r}; known: {', '.join(TEMPLATES)}") from None
