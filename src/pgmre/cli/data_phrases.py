"""``pgmre data phrases``: label-free entity-type phrases for ``text.phrases`` (the honest control for TMR's)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pgmre.cli.common import fail
from pgmre.data.entity_types import DEFAULT_NER_MODEL, NerModelError, entity_type_phrases, load_ner
from pgmre.data.mnre import DataError, load_samples
from pgmre.outputs import OutputPathError, check_output_file, write_text_atomic


def phrases(
    data: Annotated[list[Path], typer.Option("--data", help="MNRE-format or JSONL file (repeatable)")],
    out: Annotated[
        str,
        typer.Option(
            "--out", help="output JSON; {split} becomes each data file's split (mnre_val.txt -> val)"
        ),
    ],
    model: Annotated[str, typer.Option("--model", help="spaCy NER model")] = DEFAULT_NER_MODEL,
) -> None:
    """Write {0-based line: "<head> <tail> <head type> <tail type>"} for every sample, types from spaCy NER.

    Unlike TMR/CAMIM's grounding phrases, every sample gets its type words whatever its relation, so a
    model fed these phrases learns what entity types are worth without the label leak (docs/leakage.md).
    """
    if len(data) > 1 and "{split}" not in out:
        fail("--out needs {split} when several --data files are given")
    targets = [Path(out.replace("{split}", path.stem.rsplit("_", 1)[-1])) for path in data]
    try:
        for target in targets:
            check_output_file(target, data)
        nlp = load_ner(model)
    except (OutputPathError, NerModelError) as err:
        fail(str(err))
    for path, target in zip(data, targets, strict=True):
        try:
            samples = load_samples(path)
        except (DataError, OSError) as err:
            fail(str(err))
        texts = entity_type_phrases(samples, nlp)
        keyed = {
            str(s.source[1] - 1 if s.source else i): t
            for i, (s, t) in enumerate(zip(samples, texts, strict=True))
        }
        write_text_atomic(target, json.dumps(keyed, ensure_ascii=False, indent=0))
        typer.echo(f"{target}: {len(keyed)} phrases from {path}")


def register(data_app: typer.Typer) -> None:
    data_app.command("phrases")(phrases)
