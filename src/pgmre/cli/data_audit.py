"""``pgmre data audit``: does an auxiliary input (phrases, crop dicts, captions, keyed JSON) leak the label?

Exit status: 0 when no input crosses a threshold, 3 when one does (each flag named on stderr), 2 for bad
input (a record's file:line, or the auxiliary file that cannot be read).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from pgmre.cli.common import fail
from pgmre.data.audit import (
    AUX_KINDS,
    AuditReport,
    AuditThresholds,
    AuxInput,
    AuxInputError,
    audit_aux_inputs,
    report_rows,
    write_report,
)
from pgmre.data.mnre import DataError, load_samples
from pgmre.encoders.paths import split_of_file
from pgmre.labels import RelationVocab

#: Exit status when an input is label-predictive.
EXIT_LEAK = 3


def parse_aux(spec: str) -> AuxInput:
    """``KIND[:NAME]=PATH`` -> AuxInput; PATH may hold ``{split}``."""
    kind_name, sep, path = spec.partition("=")
    kind, _, name = kind_name.partition(":")
    if not sep or not path or kind not in AUX_KINDS:
        raise AuxInputError(
            f"--aux {spec!r}: expected KIND[:NAME]=PATH with KIND one of {', '.join(AUX_KINDS)} "
            "(e.g. phrases=data/phrase_text_{split}.json)"
        )
    name = name.strip()
    return AuxInput(kind, path, f"{kind}:{name}" if name else kind)


def _unique_names(inputs: list[AuxInput]) -> list[AuxInput]:
    """Two inputs of one kind without names are told apart by their file name."""
    seen: dict[str, int] = {}
    for aux in inputs:
        seen[aux.name] = seen.get(aux.name, 0) + 1
    for aux in inputs:
        if seen[aux.name] > 1 and aux.name == aux.kind:  # no NAME given
            aux.name = f"{aux.kind}:{Path(aux.templates[0]).name}"
    names = [aux.name for aux in inputs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise AuxInputError(f"--aux: the name(s) {', '.join(duplicates)} are given twice; use KIND:NAME=PATH")
    return inputs


def print_table(report: AuditReport, console: Console) -> None:
    scored_on = f"{report.eval} ({report.n_eval})" if report.eval else report.protocol
    table = Table(
        title=f"Label-leakage audit: rules fitted on {report.train} ({report.n_train}), scored on {scored_on}"
    )
    rows = report_rows(report)
    for header in rows[0]:
        table.add_column(header, justify="left" if header in ("input", "feature", "flag") else "right")
    for row in rows:
        table.add_row(*row.values(), style="bold red" if row["flag"] else None)
    console.print(table)


def audit(
    train: Annotated[Path, typer.Option("--train", help="labelled MNRE-format file the rules are fitted on")],
    aux: Annotated[
        list[str],
        typer.Option(
            "--aux",
            help="KIND[:NAME]=PATH, repeatable; KIND: phrases, crops, captions or json (any JSON object keyed "
            "by 0-based line number or img_id). {split} in PATH is filled with 'train' for --train and the "
            "evaluation split for --eval",
        ),
    ],
    eval_file: Annotated[
        Path | None,
        typer.Option("--eval", help="labelled file the rules are scored on; default: 5-fold CV on --train"),
    ] = None,
    eval_split: Annotated[
        str | None,
        typer.Option(
            "--eval-split", help="what {split} means for --eval (dev also finds val); default: from its name"
        ),
    ] = None,
    out: Annotated[Path, typer.Option("--out", help="directory for audit.json and audit.md")] = Path("."),
    max_separation: Annotated[
        float, typer.Option("--max-separation", help="flag above this None/non-None accuracy (%)")
    ] = AuditThresholds.max_separation,
    max_f1: Annotated[
        float, typer.Option("--max-f1", help="flag above this micro-F1 (%)")
    ] = AuditThresholds.max_f1,
    min_count: Annotated[
        int, typer.Option("--min-count", min=1, help="feature values rarer than this in train count as one")
    ] = AuditThresholds.min_count,
    rel2id: Annotated[
        Path | None, typer.Option("--rel2id", help="rel2id.json; default: the bundled MNRE relations")
    ] = None,
) -> None:
    """Fit a trivial rule per feature of each auxiliary input on --train, score it on --eval; exit 3 on a leak."""
    if out.exists() and not out.is_dir():
        fail(f"--out {out}: is a file; name a directory for audit.json and audit.md")
    thresholds = AuditThresholds(max_separation=max_separation, max_f1=max_f1, min_count=min_count)
    try:
        vocab = RelationVocab.mnre() if rel2id is None else RelationVocab.from_file(rel2id)
        inputs = _unique_names([parse_aux(spec) for spec in aux])
        train_samples = load_samples(train, vocab, require_image=False)
        eval_samples = load_samples(eval_file, vocab, require_image=False) if eval_file is not None else None
        split = eval_split or (split_of_file(eval_file) if eval_file is not None else "dev")
        report = audit_aux_inputs(train_samples, eval_samples, inputs, thresholds, vocab, eval_split=split)
    except (DataError, AuxInputError, ValueError) as err:
        fail(str(err))
    print_table(report, Console() if sys.stdout.isatty() else Console(width=160))
    try:
        json_path, md_path = write_report(report, out)
    except OSError as err:
        fail(f"{out}: cannot write the audit: {err}")
    typer.echo(f"wrote {json_path} and {md_path}")
    for flag in report.flagged:
        typer.echo(f"leak: {flag}", err=True)
    if report.flagged:
        raise typer.Exit(EXIT_LEAK)


def register(data_app: typer.Typer) -> None:
    data_app.command("audit")(audit)
