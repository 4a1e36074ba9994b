"""``pgmre data ...``: check MNRE-format files, count the US/UT subsets, write a synthetic dataset."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Annotated, Any

import typer

from pgmre.cli.common import VocabOption, fail
from pgmre.data.mnre import DataError, ReadResult, read_samples
from pgmre.labels import RelationVocab

data_app = typer.Typer(
    help="Check MNRE-format files, compute evaluation subsets, write synthetic data.", no_args_is_help=True
)

#: How many individual errors `data check` prints before summarising the rest.
MAX_ERRORS_SHOWN = 20

Rel2idOption = Annotated[
    Path | None, typer.Option("--rel2id", help="rel2id.json; default: the bundled MNRE relations")
]


def relation_vocab(rel2id: Path | None) -> RelationVocab:
    """The vocabulary named on the command line, or the bundled MNRE one; bad files exit 2."""
    try:
        return RelationVocab.mnre() if rel2id is None else RelationVocab.from_file(rel2id)
    except ValueError as err:
        fail(str(err))


def summarize(result: ReadResult, path: Path) -> dict[str, Any]:
    """The counts ``data check`` reports for a read file."""
    samples = result.samples
    return {
        "file": str(path),
        "format": result.format,
        "samples": len(samples),
        "posts": len({s.tokens for s in samples}),
        "images": len({s.img_id for s in samples if s.img_id is not None}),
        "entities": len({name for s in samples for name in (s.head.name, s.tail.name)}),
        "relations": dict(Counter(s.relation for s in samples if s.relation is not None).most_common()),
        "unlabelled": sum(s.relation is None for s in samples),
        "errors": result.error_counts(),
        "warnings": result.warning_counts(),
    }


def _print_summary(summary: dict[str, Any]) -> None:
    typer.echo(f"{summary['file']} ({summary['format']} format)")
    for key in ("samples", "posts", "images", "entities", "unlabelled"):
        typer.echo(f"  {key + ':':<12}{summary[key]}")
    typer.echo("  relations:")
    for name, count in summary["relations"].items():
        typer.echo(f"    {count:>7}  {name}")
    for key in ("warnings", "errors"):
        if summary[key]:
            typer.echo(f"  {key}: " + ", ".join(f"{k}={v}" for k, v in sorted(summary[key].items())))


@data_app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="MNRE (.txt, Python-literal lines) or JSONL file")],
    strict: Annotated[
        bool, typer.Option("--strict/--lenient", help="stop at the first invalid record, or list them all")
    ] = True,
    rel2id: Rel2idOption = None,
    require_relation: Annotated[
        bool, typer.Option("--labelled/--unlabelled", help="whether every record must have a relation")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="print the summary as JSON")] = False,
) -> None:
    """Validate FILE and print a summary; exit 0 when every record is valid, 2 otherwise."""
    vocab = relation_vocab(rel2id)
    try:
        result = read_samples(file, vocab, strict=strict, require_relation=require_relation)
    except DataError as err:
        fail(str(err))
    summary = summarize(result, file)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    if result.errors:
        for issue in result.errors[:MAX_ERRORS_SHOWN]:
            typer.echo(f"error: {issue}", err=True)
        if len(result.errors) > MAX_ERRORS_SHOWN:
            typer.echo(f"... and {len(result.errors) - MAX_ERRORS_SHOWN} more errors", err=True)
        raise typer.Exit(2)


@data_app.command("subsets")
def subsets(
    train: Annotated[Path, typer.Option("--train", help="training file that defines 'seen' entities")],
    eval_file: Annotated[Path, typer.Option("--eval", help="file whose samples are counted")],
    vocab: VocabOption = None,
) -> None:
    """Print {"n", "unseen", "untokenizable"} for the samples of --eval (MNRE US / UT)."""
    from pgmre.data.subsets import subset_counts

    try:
        train_samples = read_samples(train, require_relation=False, require_image=False).samples
        eval_samples = read_samples(eval_file, require_relation=False, require_image=False).samples
        counts = subset_counts(eval_samples, train_samples, vocab)
    except (DataError, OSError, ValueError) as err:
        fail(str(err))
    typer.echo(json.dumps(counts))


@data_app.command("synth")
def synth(
    out: Annotated[Path, typer.Option("--out", help="output directory")],
    n_train: Annotated[int, typer.Option("--train", min=0, help="training samples")] = 64,
    n_dev: Annotated[int, typer.Option("--dev", min=0, help="dev samples")] = 16,
    n_test: Annotated[int, typer.Option("--test", min=0, help="test samples")] = 16,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    image_size: Annotated[int, typer.Option("--image-size", min=16, help="image side in pixels")] = 64,
) -> None:
    """Write a synthetic MNRE-format dataset (text, images, two caption files) to --out."""
    from pgmre.data.synthetic import make_synthetic_dataset

    try:
        ds = make_synthetic_dataset(out, n_train, n_dev, n_test, seed=seed, image_size=image_size)
    except (OSError, ValueError) as err:
        fail(str(err))
    from pgmre.data.mnre import load_samples

    # the images this dataset uses (an earlier, larger dataset in the same --out may have left more)
    n_images = len({s.img_id for path in ds.splits.values() for s in load_samples(path)})
    typer.echo(f"wrote {n_train}/{n_dev}/{n_test} train/dev/test samples and {n_images} images to {ds.root}")


def register(app: typer.Typer) -> None:
    from pgmre.cli import data_audit, data_phrases
    from pgmre.cli.data_fetch import fetch_app

    data_audit.register(data_app)
    data_phrases.register(data_app)

    data_app.add_typer(fetch_app, name="fetch")
    app.add_typer(data_app, name="data")
