"""``pgmre features``: precompute the frozen visual (and frozen explanation) features into the cache."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgmre.cli.common import fail

if TYPE_CHECKING:
    from pgmre.config import Config
    from pgmre.data.types import Sample

SPLITS = ("train", "dev", "test")


def _samples(cfg: Config, split: str) -> list[Sample]:
    from pgmre.data.mnre import DataError, load_samples

    path = getattr(cfg.data, split)
    try:
        return load_samples(path, strict=cfg.data.strict, require_relation=False)
    except DataError as err:
        fail(str(err))


def _visual(cfg: Config, split: str, samples: list[Sample]) -> None:
    from pgmre.encoders.missing import MissingInputError
    from pgmre.encoders.paths import InputPathError
    from pgmre.encoders.visual import build_visual_provider

    if cfg.visual.source == "none":
        typer.echo(f"{split}: visual.source=none, no visual features")
        return
    try:
        provider = build_visual_provider(cfg.visual, cfg.text, split=split, progress=True)
        batch = provider.features(samples)
    except MissingInputError as err:
        fail(f"{split}: {err}")
    except (InputPathError, ValueError, OSError) as err:
        fail(f"{split}: {err}")
    stats = provider.cache_stats
    filled = batch.mask.sum(0).tolist()
    typer.echo(
        f"{split}: {len(samples)} samples, {cfg.visual.source} features d={provider.dim}; "
        f"cache hits {stats['hits']}, misses {stats['misses']}; filled slots {filled}"
    )
    if batch.report:
        typer.echo(f"{split}: missing inputs (visual.missing=blank: zero features, masked):")
        typer.echo("  " + batch.report.summary().replace("\n", "\n  "))


def _explanations(cfg: Config, split: str, samples: list[Sample]) -> None:
    if not cfg.model.use_explanations or cfg.text.explanation_encoder != "frozen":
        return
    from pgmre.encoders.feature_cache import FrozenTextFeatures
    from pgmre.explain import ExplanationsMissing, explanations_for

    try:
        pairs = explanations_for(samples, cfg.explain, generate=False)
    except ExplanationsMissing as err:
        typer.echo(f"{split}: frozen explanation features skipped, explanations are not all cached:\n{err}")
        return
    texts = sorted({text for pair in pairs for text in pair})
    frozen = FrozenTextFeatures(
        cfg.text.encoder,
        max_length=cfg.text.explanation_max_length,
        cache_dir=cfg.visual.feature_cache,
        device=cfg.visual.device,
        progress=True,
    )
    frozen.precompute(texts)
    typer.echo(
        f"{split}: {len(texts)} distinct explanations; cache hits {frozen.cache.hits}, misses {frozen.cache.misses}"
    )


def features(
    config: Annotated[Path, typer.Option("--config", "-c", help="YAML config (data, text, visual sections)")],
    split: Annotated[str, typer.Option("--split", "-s", help="train, dev, test or all")] = "all",
    overrides: Annotated[
        list[str] | None,
        typer.Option("--set", help="config override key.path=value (repeatable)", show_default=False),
    ] = None,
) -> None:
    """Precompute the frozen visual features of a split (and frozen explanation features when
    text.explanation_encoder=frozen) into visual.feature_cache; prints cache hits and misses."""
    from pgmre.config import ConfigError, load_config

    try:
        cfg = load_config(config, overrides or [])
    except ConfigError as err:
        fail(str(err))
    if split != "all" and split not in SPLITS:
        fail(f"--split must be one of {', '.join(SPLITS)} or all, got {split!r}")
    wanted = SPLITS if split == "all" else (split,)
    chosen = [name for name in wanted if getattr(cfg.data, name)]
    if not chosen:
        fail(f"no data.{' / data.'.join(wanted)} path in {config}")
    for name in chosen:
        samples = _samples(cfg, name)
        _visual(cfg, name, samples)
        _explanations(cfg, name, samples)


def register(app: typer.Typer) -> None:
    app.command("features")(features)
