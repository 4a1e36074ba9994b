"""New posts in, validated samples out: tokenization with character offsets, entity look-up, images.

A post is plain text (tokenized here) or a token list. An entity is given as a name (found in the
tokens; absent or ambiguous names are errors that say so), a token span ``(start, end)``, or a dict
``{"name": ..., "pos": [start, end]}`` (token span) / ``{"name": ..., "chars": [start, end]}``
(character span, e.g. a text selection; snapped to the tokens it touches).
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image, UnidentifiedImageError

from pgmre.data.parsing import shown, text_problem
from pgmre.data.types import Entity, entity_pair_problem
from pgmre.encoders.images import ImageInput, image_bytes

# URLs whole; words keep inner hyphens, dots, ampersands and apostrophes (but a possessive 's is split
# off, so "Obama's" gives "Obama" "'s"); @handles and #tags stay one token; other symbols stand alone.
_TOKEN = re.compile(
    r"https?://\S+"
    r"|[@#]?\w+(?:[-.&]\w+|['’](?![sS]\b)\w+)*"
    r"|['’][sS]\b"
    r"|[^\w\s]"
)
_SPACE = re.compile(r"\s+")

EntitySpec = str | Sequence[int] | Mapping[str, Any]


class InputError(ValueError):
    """An input that cannot be predicted on; the message says what is wrong and where."""


class ImageTooLarge(InputError):
    """An image over a configured size limit (bytes or pixels)."""


def check_text(value: str, what: str) -> str:
    """``value`` unchanged when it is valid Unicode text (no lone surrogate); else :class:`InputError`."""
    problem = text_problem(value)
    if problem is not None:
        raise InputError(f"{what}: {problem}")
    return value


def _span(start: int, end: int) -> str:
    return f"[{shown(start)}, {shown(end)})"


@dataclass(frozen=True)
class Tokens:
    """The tokens of a post and each token's ``(start, end)`` character offsets in ``text``."""

    text: str
    tokens: tuple[str, ...]
    offsets: tuple[tuple[int, int], ...]


def tokenize(text: str | Sequence[str]) -> Tokens:
    """Split text into tokens (whitespace, punctuation split off); a token list is kept as given.

    For a token list, character offsets refer to the tokens joined by single spaces.
    """
    if isinstance(text, str):
        check_text(text, "text")
        matches = list(_TOKEN.finditer(text))
        if not matches:
            raise InputError("text: no tokens (the text is empty or only whitespace)")
        return Tokens(text, tuple(m.group(0) for m in matches), tuple(m.span() for m in matches))
    if not isinstance(text, Sequence) or not all(isinstance(t, str) for t in text):
        raise InputError("text: expected a string or a list of token strings")
    if not text:
        raise InputError("text: the token list is empty")
    bad = [i for i, t in enumerate(text) if not t.strip() or _SPACE.search(t)]
    if bad:
        raise InputError(f"text: token {bad[0]} ({shown(text[bad[0]])}) is empty or contains whitespace")
    for i, token in enumerate(text):
        check_text(token, f"text: token {i}")
    offsets: list[tuple[int, int]] = []
    position = 0
    for token in text:
        offsets.append((position, position + len(token)))
        position += len(token) + 1
    return Tokens(" ".join(text), tuple(text), tuple(offsets))


def _find(needle: tuple[str, ...], tokens: tuple[str, ...], fold: bool) -> list[int]:
    if fold:
        needle = tuple(t.casefold() for t in needle)
        tokens = tuple(t.casefold() for t in tokens)
    n = len(needle)
    return [i for i in range(len(tokens) - n + 1) if tokens[i : i + n] == needle]


def _by_name(name: str, post: Tokens, role: str) -> tuple[int, int]:
    needle = tokenize(name).tokens if name.strip() else ()
    if not needle:
        raise InputError(f"{role}: the entity name is empty")
    starts = _find(needle, post.tokens, fold=False) or _find(needle, post.tokens, fold=True)
    if not starts:
        raise InputError(f"{role}: {shown(name)} does not occur in the text")
    if len(starts) > 1:
        where = ", ".join(f"[{s}, {s + len(needle)})" for s in starts[:5]) + (
            ", ..." if len(starts) > 5 else ""
        )
        raise InputError(
            f"{role}: {shown(name)} occurs {len(starts)} times (token spans {where}); "
            "give its span instead, e.g. {'name': ..., 'pos': [start, end]}"
        )
    return starts[0], starts[0] + len(needle)


def _int_pair(value: Any, what: str) -> tuple[int, int]:
    if (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return int(value[0]), int(value[1])
    raise InputError(f"{what}: expected [start, end] integers, got {shown(value)}")


def _by_chars(chars: tuple[int, int], post: Tokens, role: str) -> tuple[int, int]:
    lo, hi = chars
    if not 0 <= lo < hi <= len(post.text):
        raise InputError(f"{role}.chars: {_span(lo, hi)} is empty or outside the {len(post.text)} characters")
    touched = [i for i, (s, e) in enumerate(post.offsets) if s < hi and e > lo]
    if not touched:
        raise InputError(f"{role}.chars: {_span(lo, hi)} covers no token (only spaces?)")
    return touched[0], touched[-1] + 1


def resolve_entity(spec: EntitySpec, post: Tokens, role: str) -> Entity:
    """The entity ``spec`` names in ``post``; ``role`` ("head"/"tail") prefixes every error."""
    n = len(post.tokens)
    name: str | None = None
    if isinstance(spec, str):
        start, end = _by_name(check_text(spec, role), post, role)
    elif isinstance(spec, Mapping):
        unknown = sorted(shown(k) for k in spec if k not in ("name", "pos", "chars"))
        if unknown:
            raise InputError(f"{role}: unknown keys {', '.join(unknown)}; use name, pos or chars")
        name = spec.get("name")
        if name is not None and not isinstance(name, str):
            raise InputError(f"{role}.name: expected a string, got {type(name).__name__}")
        if name is not None:
            check_text(name, f"{role}.name")
        if "pos" in spec and "chars" in spec:
            raise InputError(f"{role}: give pos (token span) or chars (character span), not both")
        if "pos" in spec:
            start, end = _int_pair(spec["pos"], f"{role}.pos")
        elif "chars" in spec:
            chars = _int_pair(spec["chars"], f"{role}.chars")
            start, end = _by_chars(chars, post, role)
            if name is not None and _SPACE.sub("", name) != _SPACE.sub("", post.text[chars[0] : chars[1]]):
                raise InputError(
                    f"{role}: name {shown(name)} is not the text at characters {list(chars)} "
                    f"({shown(post.text[chars[0] : chars[1]])})"
                )
            name = None  # checked against the selection; the entity is the tokens it touches
        elif name is not None:
            start, end = _by_name(name, post, role)
            name = None
        else:
            raise InputError(f"{role}: give name, pos or chars")
    elif isinstance(spec, Sequence):
        start, end = _int_pair(spec, role)
    else:
        raise InputError(f"{role}: expected a name, a [start, end] token span or a dict, got {shown(spec)}")
    if not 0 <= start < end <= n:
        raise InputError(f"{role}: token span {_span(start, end)} is empty or outside the {n} tokens")
    span_text = " ".join(post.tokens[start:end])
    if name is not None and _SPACE.sub("", name) != _SPACE.sub("", span_text):
        raise InputError(
            f"{role}: name {shown(name)} is not the text of tokens [{start}, {end}) ({shown(span_text)})"
        )
    return Entity(span_text, start, end)


def check_entity_pair(head: Entity, tail: Entity) -> None:
    """The pair rule of :func:`~pgmre.data.types.entity_pair_problem` (the same for MNRE records)."""
    problem = entity_pair_problem(head, tail)
    if problem is not None:
        raise InputError(problem)


def caption_text(value: Any) -> str:
    """A caption given with a post: non-empty, valid Unicode text."""
    if not isinstance(value, str) or not value.strip():
        raise InputError("caption: expected non-empty text")
    return check_text(value, "caption")


def explanation_pair(value: Any) -> tuple[str, str] | None:
    """``{"head": ..., "tail": ...}`` or ``[head, tail]`` -> a pair of non-empty strings (None stays None)."""
    if value is None:
        return None
    if isinstance(value, Mapping):
        if set(value) != {"head", "tail"}:
            keys = ", ".join(sorted(map(shown, value)))
            raise InputError(f"explanations: expected keys head and tail, got {keys}")
        pair = (value["head"], value["tail"])
    elif isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 2:
        pair = (value[0], value[1])
    else:
        raise InputError("explanations: expected {'head': text, 'tail': text} or [head text, tail text]")
    if not all(isinstance(t, str) and t.strip() for t in pair):
        raise InputError("explanations: both the head and the tail explanation must be non-empty text")
    return check_text(pair[0], "explanations.head"), check_text(pair[1], "explanations.tail")


def read_image(value: ImageInput, max_bytes: int | None = None, max_pixels: int | None = None) -> bytes:
    """The bytes of an image (path, bytes or PIL image), checked to decode and to fit the limits.

    The pixel count is read from the header before decoding, so a decompression bomb is refused cheaply.
    """
    label = f"image {shown(str(value))}" if isinstance(value, str | Path) else "image"
    try:
        data = image_bytes(value)
    except OSError as err:
        raise InputError(f"{label}: cannot read: {err.strerror or err}") from None
    except ValueError as err:  # a path with a NUL byte or a lone surrogate
        raise InputError(f"{label}: not a usable file path ({err})") from None
    if max_bytes is not None and len(data) > max_bytes:
        raise ImageTooLarge(f"{label}: {len(data)} bytes, over the limit of {max_bytes}")
    try:
        with Image.open(io.BytesIO(data)) as img:
            width, height = img.size
            if max_pixels is not None and width * height > max_pixels:
                raise ImageTooLarge(f"{label}: {width}x{height} pixels, over the limit of {max_pixels}")
            img.load()
    except UnidentifiedImageError:
        raise InputError(f"{label}: not a readable image (unknown format)") from None
    except Image.DecompressionBombError:
        # Pillow refuses more than twice its MAX_IMAGE_PIXELS in the header, before our own check runs.
        bomb = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        limit = bomb if max_pixels is None else min(max_pixels, bomb)
        raise ImageTooLarge(f"{label}: more than {bomb} pixels, over the limit of {limit}") from None
    except InputError:
        raise
    # Decoders fail on hostile bytes in many ways (OSError, EOFError, SyntaxError, struct.error...).
    except Exception as err:
        raise InputError(f"{label}: not a readable image ({type(err).__name__}: {err})") from None
    return data
