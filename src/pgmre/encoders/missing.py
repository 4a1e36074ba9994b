"""Missing or unreadable visual inputs: counted per kind and reported, never silently replaced."""

from __future__ import annotations

from dataclasses import dataclass, field

EXAMPLES_PER_KIND = 5


@dataclass
class MissingReport:
    """Distinct missing items per kind (``image``, ``crop``, ``caption``, ``object_caption``), first few shown."""

    counts: dict[str, int] = field(default_factory=dict)
    examples: dict[str, list[str]] = field(default_factory=dict)
    _seen: set[tuple[str, str]] = field(default_factory=set, repr=False)

    def add(self, kind: str, item: str, reason: str) -> None:
        """Count ``item`` once per kind, however many samples share it."""
        if (kind, item) in self._seen:
            return
        self._seen.add((kind, item))
        self.counts[kind] = self.counts.get(kind, 0) + 1
        shown = self.examples.setdefault(kind, [])
        if len(shown) < EXAMPLES_PER_KIND:
            shown.append(f"{item} ({reason})")

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __bool__(self) -> bool:
        return self.total > 0

    def summary(self) -> str:
        if not self:
            return "no missing visual inputs"
        lines = []
        for kind in sorted(self.counts):
            lines.append(f"{self.counts[kind]} missing {kind}(s), e.g. " + "; ".join(self.examples[kind]))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, object]:
        return {"counts": dict(self.counts), "examples": {k: list(v) for k, v in self.examples.items()}}


class MissingInputError(FileNotFoundError):
    """Raised under ``visual.missing = error``; ``report`` lists every missing input of the call."""

    def __init__(self, report: MissingReport) -> None:
        self.report = report
        super().__init__(
            report.summary() + "\n(set visual.missing=blank to use zero features with a false mask instead)"
        )
