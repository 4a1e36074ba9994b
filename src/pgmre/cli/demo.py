"""``pgmre demo``: the README's main job, offline, in a few minutes on a CPU."""

from __future__ import annotations

from pathlib import Path

import typer


def demo(
    out: Path = typer.Option(Path("runs/demo"), "--out", help="where the data, run and reports go"),
    epochs: int = typer.Option(6, min=1, help="training epochs"),
    n_train: int = typer.Option(120, "--train-samples", min=1, help="synthetic training samples"),
    seed: int = typer.Option(0, help="seed of the data and the run"),
) -> None:
    """Synthetic posts -> explanations -> image features -> train -> evaluate -> predict, all offline."""
    from pgmre.cli.train import USER_ERRORS
    from pgmre.demo import run_demo

    # every input is synthetic and checked above: a ValueError here is a bug, with its traceback
    errors = tuple(e for e in USER_ERRORS if e is not ValueError)

    if out.exists() and not out.is_dir():
        typer.secho(f"--out {out}: a file, not a directory", fg="red", err=True)
        raise typer.Exit(2)
    try:
        result = run_demo(out, epochs=epochs, n_train=n_train, seed=seed)
    except errors as err:
        typer.secho(f"{type(err).__name__}: {err}", fg="red", err=True)
        raise typer.Exit(2) from None
    r, p = result.report, result.prediction
    typer.secho(f"\npgmre demo finished in {result.seconds:.0f} s", bold=True)
    typer.echo(
        f"test set ({r['n']} samples): accuracy {r['accuracy']:.2f}, micro-F1 {r['f1']:.2f}, macro-F1 {r['macro_f1']:.2f}"
    )
    typer.echo(f"post: {' '.join(p['tokens'])}")
    typer.echo(
        f"  head {p['head']['name']!r}, tail {p['tail']['name']!r}: predicted {p['relation']} (p={p['probability']:.2f}), gold {p['gold']}"
    )
    if p.get("explanations"):
        typer.echo(f"  head explanation: {p['explanations']['head']}")
        typer.echo(f"  tail explanation: {p['explanations']['tail']}")
    typer.echo("outputs:")
    typer.echo(f"  run (checkpoints, metrics): {result.run_dir}")
    typer.echo(f"  evaluation report and plots: {result.eval_dir}")
    typer.echo(f"  prediction: {Path(out) / 'prediction.json'}")
    typer.echo(f"next: pgmre serve --run {result.run_dir}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
