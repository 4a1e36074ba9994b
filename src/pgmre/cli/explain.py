"""``pgmre explain ...``: generate entity explanations into the SQLite cache, inspect, export, import."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgmre.cli.common import fail

if TYPE_CHECKING:
    from pgmre.config import ExplainConfig

explain_app = typer.Typer(
    help="Entity explanations (PG-MRE step 1): run the backend chain over data files into the cache; "
    "stats, export, import and repair of the cache.",
    no_args_is_help=True,
)

#: How many failed items `explain run` lists before summarising the rest.
MAX_FAILURES_SHOWN = 5

ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML config (its explain section)")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="config override key.path=value (repeatable)", show_default=False),
]
CacheOption = Annotated[Path | None, typer.Option("--cache", help="SQLite cache; default: explain.cache")]


def explain_config(
    config: Path | None, overrides: list[str] | None, cache: Path | None = None, **flags: str | None
) -> ExplainConfig:
    """The explain section of the config, with ``--set`` overrides and then the command's own flags."""
    from pgmre.config import ConfigError, load_config

    try:
        cfg = load_config(config, overrides or []).explain
        if cache is not None:
            cfg.cache = str(cache)
        for name, value in flags.items():
            if value is not None:
                setattr(cfg, name, value)
    except (ConfigError, ValueError) as err:
        fail(str(err))
    return cfg


@explain_app.command("run")
def run(
    data: Annotated[
        list[Path], typer.Option("--data", "-d", help="MNRE or JSONL file (repeatable)", show_default=False)
    ],
    backend: Annotated[str | None, typer.Option(help="backend or chain, e.g. wikipedia,local")] = None,
    template: Annotated[str | None, typer.Option(help="prompt template version (v1, v2)")] = None,
    cache: CacheOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    limit: Annotated[int | None, typer.Option(min=1, help="only the first N unique requests")] = None,
) -> None:
    """Explain every head and tail entity of the data files; resumable (finished work is in the cache)."""
    from pgmre.data.mnre import DataError, load_samples
    from pgmre.explain import BackendUnavailable, CacheError, Explainer, ExplanationCache, requests_for
    from pgmre.explain.runner import import_artifact_once

    cfg = explain_config(config, overrides, cache, backend=backend, template=template)
    samples = []
    try:
        for path in data:
            samples.extend(load_samples(path, require_relation=False, require_image=False))
    except (DataError, OSError) as err:
        fail(str(err))
    try:
        with ExplanationCache(cfg.cache) as store:
            if cfg.artifact:
                added = import_artifact_once(store, cfg.artifact)
                if added:
                    typer.echo(f"imported {added} explanations from {cfg.artifact}", err=True)
            explainer = Explainer(cfg, store)
            requests = explainer.unique_requests(requests_for(samples))
            typer.echo(
                f"{len(samples)} samples, {2 * len(samples)} entity mentions, {len(requests)} unique requests "
                f"(template {cfg.template}); chain {cfg.backend}; cache {cfg.cache}",
                err=True,
            )
            try:
                report = explainer.run(requests[:limit], progress=True)
            finally:
                explainer.close()
    except (BackendUnavailable, CacheError, FileNotFoundError) as err:
        fail(str(err))
    per_backend = ", ".join(f"{name}={n}" for name, n in sorted(report.by_backend.items())) or "none"
    typer.echo(
        f"explained {len(report.explained)}/{report.total} ({report.cache_hits} from the cache, "
        f"{sum(report.generated.values())} new); by backend: {per_backend}"
    )
    if report.failed:
        typer.echo(f"{len(report.failed)} failed (kept out of the cache, retried on the next run):", err=True)
        for failure in report.failed[:MAX_FAILURES_SHOWN]:
            typer.echo(f"  [{failure.backend}] {failure.request.entity!r}: {failure.error}", err=True)
        raise typer.Exit(1)


@explain_app.command("stats")
def stats(
    cache: CacheOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the statistics as JSON")] = False,
) -> None:
    """Rows per backend/model/template, mean latency and tokens, failures."""
    from pgmre.explain import CacheError, ExplanationCache

    cfg = explain_config(config, overrides, cache)
    if not Path(cfg.cache).exists():
        fail(f"{cfg.cache}: no such cache")
    try:
        with ExplanationCache(cfg.cache) as store:
            summary = store.stats()
            summary["first_failures"] = store.failures(limit=MAX_FAILURES_SHOWN)
    except CacheError as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(summary, indent=2, ensure_ascii=False))
        return
    typer.echo(f"{summary['path']}: {summary['rows']} explanations")
    for group in summary["groups"]:
        latency = group["mean_latency_s"]
        tokens = group["mean_tokens"]
        typer.echo(
            f"  {group['rows']:>7}  {group['backend']:<10} {group['model']:<36} template={group['template']:<3} "
            f"latency={'-' if latency is None else f'{latency:.3f}s'} "
            f"tokens={'-' if tokens is None else f'{tokens:.1f}'} chars={group['mean_chars']:.0f}"
        )
    for group in summary["failures"]:
        typer.echo(
            f"  failures: {group['items']} items ({group['attempts']} attempts) {group['backend']} {group['model']}"
        )
    for failure in summary["first_failures"]:
        typer.echo(f"    {failure['entity']!r}: {failure['error']}")


@explain_app.command("export")
def export(
    output: Annotated[Path, typer.Argument(help="JSONL file; .gz compresses (byte-reproducible)")],
    cache: CacheOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Write every cached explanation (entity, sentence hash, text, backend, model, template...)."""
    from pgmre.explain import CacheError, ExplanationCache
    from pgmre.outputs import OutputPathError, check_output_file

    cfg = explain_config(config, overrides, cache)
    if not Path(cfg.cache).exists():
        fail(f"{cfg.cache}: no such cache")
    try:
        check_output_file(output, [cfg.cache, cfg.artifact], option="OUTPUT")
        with ExplanationCache(cfg.cache) as store:
            n = store.export_jsonl(output)
    except (CacheError, OutputPathError, OSError) as err:
        fail(str(err))
    typer.echo(f"wrote {n} explanations to {output}")


@explain_app.command("import")
def import_(
    input_file: Annotated[Path, typer.Argument(help="JSONL(.gz) written by `pgmre explain export`")],
    cache: CacheOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
) -> None:
    """Add the explanations of an export to the cache (validated first; existing rows are kept)."""
    from pgmre.explain import CacheError, ExplanationCache

    cfg = explain_config(config, overrides, cache)
    try:
        with ExplanationCache(cfg.cache) as store:
            read, added = store.import_jsonl(input_file)
    except CacheError as err:
        fail(str(err))
    typer.echo(f"read {read} explanations from {input_file}, added {added} to {cfg.cache}")


@explain_app.command("repair")
def repair(
    cache: CacheOption = None,
    config: ConfigOption = None,
    overrides: SetOption = None,
    artifact: Annotated[
        str | None, typer.Option(help="JSONL(.gz) export to import again; default: explain.artifact")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="rebuild even when no damage is found")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Rebuild a damaged cache: every readable, self-consistent row goes into a fresh file, the artifact is
    imported again, and the damaged file is kept as CACHE.damaged-TIME. Run it while nothing else uses
    the cache."""
    from pgmre.explain import CacheError
    from pgmre.explain.repair import repair_cache

    cfg = explain_config(config, overrides, cache, artifact=artifact)
    try:
        report = repair_cache(cfg.cache, cfg.artifact, force=force)
    except (CacheError, OSError) as err:
        fail(str(err))
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    elif report.backup is None:
        typer.echo(f"{cfg.cache}: the integrity check found no damage; nothing to repair")
    else:
        kept = ", ".join(f"{n} {table}" for table, n in report.kept.items()) or "nothing (unreadable)"
        typer.echo(f"{cfg.cache}: rebuilt; damage found: {report.damage or 'none (--force)'}")
        typer.echo(f"  kept {kept}; rejected {report.rejected} unreadable or inconsistent rows")
        if cfg.artifact:
            typer.echo(f"  imported {report.imported} explanations from {cfg.artifact}")
        typer.echo(f"  the damaged file is kept as {report.backup}")


def register(app: typer.Typer) -> None:
    app.add_typer(explain_app, name="explain")
