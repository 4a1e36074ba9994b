"""Core record types: one relation-extraction sample in MNRE's shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Entity:
    """An entity mention: its surface name and token span ``[start, end)``."""

    name: str
    start: int
    end: int

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "pos": [self.start, self.end]}


@dataclass(frozen=True)
class Sample:
    """One (post, head, tail) triple with an optional gold relation.

    ``img_id`` names the post image (MNRE's file name); ``relation`` is ``None`` (Python None) for
    unlabelled inputs, and the string ``"None"`` for MNRE's negative class.
    ``source`` is ``(file, line)`` when the sample was read from a file, so later errors can point back.
    """

    tokens: tuple[str, ...]
    head: Entity
    tail: Entity
    img_id: str | None = None
    relation: str | None = None
    source: tuple[str, int] | None = field(default=None, compare=False)

    @property
    def text(self) -> str:
        return " ".join(self.tokens)

    @property
    def where(self) -> str:
        """``file:line`` of the sample, for messages; ``(no source)`` when it was not read from a file."""
        return f"{self.source[0]}:{self.source[1]}" if self.source else "(no source)"

    def to_dict(self) -> dict[str, Any]:
        """The MNRE record shape (``token``, ``h``, ``t``, ``img_id``, ``relation``)."""
        record: dict[str, Any] = {
            "token": list(self.tokens),
            "h": self.head.to_dict(),
            "t": self.tail.to_dict(),
        }
        if self.img_id is not None:
            record["img_id"] = self.img_id
        if self.relation is not None:
            record["relation"] = self.relation
        return record


def entity_pair_problem(head: Entity, tail: Entity) -> str | None:
    """Why ``head``/``tail`` cannot be a relation instance, or None: the one rule every reader applies.

    Both on the same tokens is refused everywhere (files, ``pgmre predict``, the server): MNRE v2 has
    no such sample (0 of 13,871; 62 merely overlap, and overlaps are kept).
    """
    if (head.start, head.end) == (tail.start, tail.end):
        return f"head and tail are the same tokens [{head.start}, {head.end}) ({head.name!r})"
    return None
