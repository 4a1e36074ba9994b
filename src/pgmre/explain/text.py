"""Cleaning of generated or looked-up explanations: whitespace, prefixes, token budget, cut sentences."""

from __future__ import annotations

import re

# Words and single punctuation marks: a tokenizer-independent count close to BERT's pre-tokenizer.
_UNIT = re.compile(r"\w+|[^\w\s]")
# A sentence end: . ! ? (optionally closed by a quote or bracket) before whitespace or the end, but not
# the period of an initial or an abbreviation such as "U.S." or "J.".
_SENTENCE_END = re.compile(r"(?<!\b[A-Z])(?<!\b[A-Z]\.[A-Z])[.!?][\"')\]]?(?=\s|$)")
_PREFIX = re.compile(r"^\s*(?:explanation|answer|assistant)\s*:\s*", re.IGNORECASE)


def approx_tokens(text: str) -> int:
    return len(_UNIT.findall(text))


def cut_to_units(text: str, budget: int) -> tuple[str, bool]:
    """The longest prefix of ``text`` with at most ``budget`` units; whether anything was cut."""
    units = list(_UNIT.finditer(text))
    if len(units) <= budget:
        return text, False
    return text[: units[budget - 1].end()], True


def drop_partial_sentence(text: str) -> str:
    """Cut after the last complete sentence; a text with no complete sentence is kept as it is."""
    ends = list(_SENTENCE_END.finditer(text))
    if not ends:
        return text
    last = ends[-1].end()
    return text[:last] if text[last:].strip() else text


def clean_explanation(text: str, budget: int, truncated: bool = False) -> str:
    """Normalise whitespace, drop a leading "Explanation:"-style prefix and wrapping quotes, cut to
    ``budget`` units, and drop a trailing sentence that was cut off (by us or by the generator's
    token limit: pass ``truncated=True`` then)."""
    text = " ".join(text.split())
    text = _PREFIX.sub("", text)
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        text = text[1:-1].strip()
    text, cut = cut_to_units(text, budget)
    if cut or truncated:
        text = drop_partial_sentence(text)
    return text.strip()
