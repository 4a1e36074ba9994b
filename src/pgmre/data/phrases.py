"""Per-sample phrases (``text.phrases``): TMR/CAMIM's grounding phrases, or label-free ones of your own.

A phrases file is a JSON object ``{key: phrase}``. As in TMR and CAMIM, a key that is a number is the
0-based line of the sample in its split's text file; any other key is an image name (``img_id``, with or
without its extension), so a phrase can also be given per post. On MNRE the grounding phrases carry the
gold label (docs/leakage.md): a model that reads them is a published-protocol model.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from pgmre.data.keyed import SampleKeyedTable, read_json_object
from pgmre.data.types import Sample
from pgmre.encoders.paths import InputPathError, expand


class PhraseFileError(ValueError):
    """A phrases file that cannot be read or is not ``{line number or img_id: phrase}``."""


class PhraseTable(SampleKeyedTable[str]):
    """Phrases by sample line (0-based) and by image (file stem)."""


def load_phrases(path: str | Path) -> PhraseTable:
    """Read one phrases file; errors name the file and the offending key."""
    raw = read_json_object(path, PhraseFileError, "phrases file")
    table = PhraseTable(str(path))
    for key, value in raw.items():
        if not isinstance(value, str):
            raise PhraseFileError(
                f"{path}: key {key!r}: expected a phrase string, got {type(value).__name__}"
            )
        table.add(key, value)
    return table


def phrases_for(samples: Sequence[Sample], template: str, split: str | None) -> list[str]:
    """Each sample's phrase from ``template`` (``{split}`` filled), ``""`` for samples it does not list.

    Line-number keys repeat across splits, so a template that stands for several files (no split given)
    is refused when any of them is keyed by line.
    """
    try:
        tables = [load_phrases(p) for p in expand(template, split)]
    except InputPathError as err:
        raise PhraseFileError(f"text.phrases: {err}") from None
    if len(tables) > 1 and any(t.by_line for t in tables):
        raise PhraseFileError(
            f"{template}: keyed by sample line numbers, which repeat across splits; name the split "
            "(e.g. `pgmre evaluate --split dev`)"
        )
    found: list[str] = []
    for sample in samples:
        phrase = next((p for t in tables if (p := t.lookup(sample)) is not None), "")
        found.append(phrase)
    return found
