"""Relation vocabulary shared by the whole code base (``rel2id.json`` format, ``None`` = negative class)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path

NEGATIVE_LABEL = "None"


class UnknownLabelError(ValueError):
    """A relation name that is not in the vocabulary."""


class RelationVocab:
    """Bidirectional map between relation names and class ids.

    ``None`` must be present: the MNRE scoring convention treats it as the negative class.
    """

    def __init__(self, rel2id: Mapping[str, int]) -> None:
        ids = sorted(rel2id.values())
        if ids != list(range(len(ids))):
            raise ValueError(f"relation ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        if NEGATIVE_LABEL not in rel2id:
            raise ValueError(f"the vocabulary must contain the negative label {NEGATIVE_LABEL!r}")
        self.rel2id: dict[str, int] = dict(rel2id)
        self.id2rel: list[str] = [name for name, _ in sorted(rel2id.items(), key=lambda kv: kv[1])]

    @classmethod
    def mnre(cls) -> RelationVocab:
        """The 23 MNRE relations with ``None`` = 0 (the map used by TMR and CAMIM)."""
        text = resources.files("pgmre.resources").joinpath("mnre_rel2id.json").read_text()
        return cls(json.loads(text))

    @classmethod
    def from_file(cls, path: str | Path) -> RelationVocab:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            raise ValueError(f"{path}: cannot read relation vocabulary: {err}") from err
        if not isinstance(data, dict) or not all(isinstance(v, int) for v in data.values()):
            raise ValueError(f"{path}: expected a JSON object mapping relation name to integer id")
        return cls(data)

    @classmethod
    def from_labels(cls, labels: Iterable[str]) -> RelationVocab:
        names = [NEGATIVE_LABEL, *sorted({x for x in labels if x != NEGATIVE_LABEL})]
        return cls({n: i for i, n in enumerate(names)})

    @property
    def negative_id(self) -> int:
        return self.rel2id[NEGATIVE_LABEL]

    def __len__(self) -> int:
        return len(self.id2rel)

    def __contains__(self, name: object) -> bool:
        return name in self.rel2id

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.id2rel)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RelationVocab) and self.rel2id == other.rel2id

    def encode(self, name: str) -> int:
        try:
            return self.rel2id[name]
        except KeyError:
            raise UnknownLabelError(f"unknown relation {name!r}; known: {', '.join(self.id2rel)}") from None

    def decode(self, idx: int) -> str:
        return self.id2rel[idx]

    def to_json(self) -> str:
        return json.dumps(self.rel2id, indent=1)

    def save(self, path: str | Path) -> None:
        from pgmre.outputs import write_text_atomic

        write_text_atomic(path, self.to_json())  # a run's label map: never half-written
