"""``pgmre data fetch mnre``: MNRE and its captions from the pinned upstream commits, verified and converted.

Exit codes: 0 when every requested file is in place and converted; 1 when a file could not be fetched
(404, exhausted retries, wrong hash) or converted; 2 for invalid options.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pgmre.cli.common import fail

fetch_app = typer.Typer(
    help="Download a dataset from its pinned upstream sources, verify it and convert it to pgmre's layout.",
    no_args_is_help=True,
)

#: How many individual failures are printed before summarising the rest.
MAX_FAILURES_SHOWN = 10


def _names(value: str) -> list[str]:
    """``"a, b,,c"`` -> ``["a", "b", "c"]``; ``""`` or ``"none"`` -> ``[]``."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    return [] if names == ["none"] else names


@fetch_app.command("mnre")
def mnre(
    dest: Annotated[Path, typer.Option("--dest", help="output directory")] = Path("data/mnre"),
    splits: Annotated[str, typer.Option("--splits", help="comma-separated splits")] = "train,val,test",
    captions: Annotated[
        str, typer.Option("--captions", help="comma-separated caption sources, or 'none'")
    ] = "cogvlm,minicpm,llavanext,blip",
    aux: Annotated[
        bool,
        typer.Option(
            "--aux",
            help="also the label-carrying phrase and crop files, into DEST/aux (published protocol only)",
        ),
    ] = False,
    mirror: Annotated[
        str | None,
        typer.Option(
            "--mirror", help="a directory or http(s) base URL in the OWNER/REPO/PATH layout; default: GitHub"
        ),
    ] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, help="seconds without data")] = 30.0,
    attempts: Annotated[int, typer.Option("--attempts", min=1, help="tries per file")] = 5,
    progress: Annotated[
        bool, typer.Option("--progress/--no-progress", help="progress bars on stderr")
    ] = True,
    manifest: Annotated[
        Path | None,
        typer.Option(
            "--manifest", help="another pinning of the same layout (JSON); default: the shipped one"
        ),
    ] = None,
) -> None:
    """MNRE v2 text, image captions and rel2id.json into DEST, from the commits pinned in the package.

    Re-running skips files already verified and resumes interrupted downloads.
    """
    from pgmre.data.fetch import RetryPolicy, read_manifest
    from pgmre.data.upstream import ConversionError, fetch_mnre

    try:
        report = fetch_mnre(
            dest,
            splits=_names(splits),
            captions=_names(captions),
            aux=aux,
            mirror=mirror,
            retry=RetryPolicy(attempts=attempts, timeout_s=timeout),
            progress=progress,
            manifest=read_manifest(manifest) if manifest is not None else None,
        )
    except (ConversionError, OSError) as err:  # a verified file that does not convert; a full disk
        typer.echo(f"error: {err}", err=True)
        raise typer.Exit(1) from None
    except ValueError as err:  # unknown split or source, no such mirror directory, a bad manifest
        fail(str(err))
    where = mirror or "GitHub"
    for split in report.unavailable_splits:
        typer.echo(f"note: split {split!r} is not in {where} (not requested)", err=True)
    if report.failures:
        for failure in report.failures[:MAX_FAILURES_SHOWN]:
            typer.echo(f"error: {failure}", err=True)
        if len(report.failures) > MAX_FAILURES_SHOWN:
            typer.echo(f"... and {len(report.failures) - MAX_FAILURES_SHOWN} more failures", err=True)
        for split in report.missing_splits():
            others = ",".join(s for s in _names(splits) if s not in report.missing_splits())
            hint = f"; fetch the others with --splits {others}" if others else ""
            typer.echo(f"split {split!r} is not in {where}{hint}", err=True)
        typer.echo(
            f"{len(report.failures)} file(s) failed; nothing was converted. Files already verified are kept "
            "and interrupted downloads resume on the next run.",
            err=True,
        )
        raise typer.Exit(1)
    for note in report.notes:
        typer.echo(f"note: {note}", err=True)
    typer.echo(
        f"{len(report.downloaded)} file(s) fetched, {len(report.verified)} already verified; "
        f"wrote {len(report.outputs)} files to {report.dest} (provenance: {report.dest / 'fetch.json'})"
    )
