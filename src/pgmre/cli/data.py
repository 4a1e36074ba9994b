"""``pgmre data ...`` commands (filled in by the data layer)."""

from __future__ import annotations

import typer

data_app = typer.Typer(help="Check MNRE-format files and compute evaluation subsets.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(data_app, name="data")
