"""The ``pgmre`` command line (typer). Each area registers its own commands from its module."""

from __future__ import annotations

import logging

import typer

app = typer.Typer(
    name="pgmre",
    help="Prototype-Guided Multimodal Relation Extraction: data, explanations, features, training, "
    "evaluation, prediction and serving.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(verbose: bool = typer.Option(False, "--verbose", "-v", help="debug logging")) -> None:
    """pgmre: multimodal relation extraction with PG-MRE."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def _register() -> None:
    # Imported here so that `pgmre --help` stays fast and each area owns its own commands.
    from pgmre.cli import data as data_cli
    from pgmre.cli import demo as demo_cli
    from pgmre.cli import explain as explain_cli
    from pgmre.cli import features as features_cli
    from pgmre.cli import predict as predict_cli
    from pgmre.cli import score as score_cli
    from pgmre.cli import train as train_cli

    data_cli.register(app)
    explain_cli.register(app)
    features_cli.register(app)
    predict_cli.register(app)
    score_cli.register(app)
    train_cli.register(app)
    demo_cli.register(app)


_register()


def main() -> None:
    app()
