"""Explanation backends and the factory that builds a chain from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pgmre.explain.backends.base import Backend, BackendUnavailable
from pgmre.explain.prompts import get_template

if TYPE_CHECKING:
    from pgmre.config import ExplainConfig

BACKEND_NAMES = ("openai", "local", "wikipedia", "name")


def parse_chain(spec: str) -> list[str]:
    """``"wikipedia,local"`` -> ``["wikipedia", "local"]``, checked."""
    names = [part.strip() for part in spec.split(",") if part.strip()]
    if not names:
        raise ValueError(
            "explain.backend is empty: name a backend (openai, local, wikipedia, name) or a chain"
        )
    for name in names:
        if name not in BACKEND_NAMES:
            raise ValueError(f"unknown explanation backend {name!r}; known: {', '.join(BACKEND_NAMES)}")
    if len(set(names)) != len(names):
        raise ValueError(f"explain.backend {spec!r} names a backend twice")
    return names


def build_backend(name: str, cfg: ExplainConfig) -> Backend:
    """One backend from the config (cheap: models and data load on first use)."""
    template = get_template(cfg.template)
    if name == "wikipedia":
        from pgmre.explain.backends.wikipedia import WikipediaBackend

        return WikipediaBackend(cfg.max_new_tokens, cfg.wikipedia_summaries)
    if name == "local":
        from pgmre.explain.backends.local import LocalBackend

        return LocalBackend(
            template, cfg.local_model, cfg.max_new_tokens, cfg.batch_size, cfg.local_device, cfg.local_threads
        )
    if name == "name":
        from pgmre.explain.backends.name import NameBackend

        return NameBackend()
    if name == "openai":
        from pgmre.explain.backends.openai import OpenAIBackend

        return OpenAIBackend(cfg.openai, template, cfg.max_new_tokens)
    raise ValueError(f"unknown explanation backend {name!r}")


def build_backends(cfg: ExplainConfig) -> list[Backend]:
    return [build_backend(name, cfg) for name in parse_chain(cfg.backend)]


__all__ = ["BACKEND_NAMES", "Backend", "BackendUnavailable", "build_backend", "build_backends", "parse_chain"]
