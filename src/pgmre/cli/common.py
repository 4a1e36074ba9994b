"""Helpers shared by the command modules."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str) -> NoReturn:
    """Print ``message`` on stderr and exit with status 2 (invalid input)."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)
