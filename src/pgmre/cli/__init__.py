"""The ``pgmre`` command line (typer). Each area registers its own commands from its module."""

from __future__ import annotations

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
def _root() -> None:
    """pgmre: multimodal relation extraction with PG-MRE."""


def _register() -> None:
    # Imported here so that `pgmre --help` stays fast and each area owns its own commands.
    from pgmre.cli import data as data_cli

    data_cli.register(app)


_register()


def main() -> None:
    app()
