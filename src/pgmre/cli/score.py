"""``pgmre score``: the MNRE scorer on a gold file and a predictions JSONL file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from pgmre.cli.common import VocabOption, fail
from pgmre.cli.data import Rel2idOption, relation_vocab
from pgmre.data.mnre import DataError, load_samples


def score_command(
    gold: Annotated[Path, typer.Option("--gold", help="gold MNRE-format or JSONL file")],
    pred: Annotated[
        Path,
        typer.Option("--pred", help="predictions JSONL: one {'relation': ...} per gold sample, same order"),
    ],
    train: Annotated[
        Path | None, typer.Option("--train", help="training file: adds the unseen/untokenizable subsets")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="also write the report JSON here")] = None,
    rel2id: Rel2idOption = None,
    vocab: VocabOption = None,
    against: Annotated[
        Path | None,
        typer.Option(
            "--against",
            help="a baseline's predictions JSONL: adds a paired bootstrap of 'pred beats baseline' on micro-F1",
        ),
    ] = None,
    resamples: Annotated[int, typer.Option("--resamples", min=100, help="bootstrap resamples")] = 1000,
) -> None:
    """Score predictions: accuracy, micro P/R/F1 over non-None relations, macro-F1, per relation."""
    from pgmre.evaluate.metrics import ScoreError, read_prediction_labels, score_samples
    from pgmre.outputs import OutputPathError, check_output_file, write_text_atomic

    relations = relation_vocab(rel2id)
    try:
        if out is not None:
            check_output_file(out, [gold, pred, train, against, rel2id, vocab])
        gold_samples = load_samples(gold, relations, require_image=False)
        labels = read_prediction_labels(pred, relations)
        train_samples = load_samples(train, require_relation=False, require_image=False) if train else None
        if len(labels) != len(gold_samples):
            raise ScoreError(
                f"{pred} has {len(labels)} predictions but {gold} has {len(gold_samples)} samples"
            )
        report = score_samples(gold_samples, labels, relations, train_samples, vocab)
        if against is not None:
            from pgmre.evaluate.significance import paired_bootstrap

            baseline = read_prediction_labels(against, relations)
            gold_labels = [s.relation or "" for s in gold_samples]
            report["against"] = {
                "baseline": str(against),
                **paired_bootstrap(gold_labels, baseline, labels, relations, resamples=resamples),
            }
    except (DataError, ScoreError, OutputPathError, OSError) as err:
        fail(str(err))
    text = json.dumps(report, indent=2)
    typer.echo(text)
    if out is not None:
        write_text_atomic(out, text + "\n")


def register(app: typer.Typer) -> None:
    app.command("score")(score_command)
