"""Helpers shared by the command modules."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated, NoReturn

import typer


class PrecisionChoice(StrEnum):
    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"


#: ``--device`` of evaluate, predict and serve.
DeviceOption = Annotated[
    str | None, typer.Option("--device", help="torch device of the model (default: cuda if available)")
]
#: ``--vocab`` of evaluate, score and data subsets: the vocabulary that defines MNRE-UT.
VocabOption = Annotated[
    Path | None,
    typer.Option(
        "--vocab",
        help="WordPiece vocab.txt (or a tokenizer dir holding one) defining 'untokenizable'; "
        "default: the bundled BERT-uncased",
    ),
]
#: ``--precision`` of evaluate, predict and serve (see :mod:`pgmre.precision`).
PrecisionOption = Annotated[
    PrecisionChoice | None,
    typer.Option(
        "--precision",
        help="arithmetic (default: the run's train.precision; auto = bf16 on CPUs with AMX/AVX512-BF16)",
    ),
]


def precision_value(choice: PrecisionChoice | None) -> str | None:
    return None if choice is None else choice.value


def fail(message: str) -> NoReturn:
    """Print ``message`` on stderr and exit with status 2 (invalid input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
