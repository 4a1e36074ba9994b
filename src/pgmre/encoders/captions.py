"""MLLM image descriptions standing in for images: caption files and their frozen sentence embeddings.

A caption file is a JSON object ``{img_id: text}`` (as published with CAMIM for MNRE). Each configured
source (``captions.image`` for slot 0, each entry of ``captions.objects`` for one object slot) is one
file, a ``{split}`` template, or a list of those, merged.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from pgmre.encoders.feature_cache import FeatureCache, compute_longest_first, frozen_text_spec
from pgmre.encoders.frozen_text import FrozenTextEncoder
from pgmre.encoders.paths import expand, file_stem


class CaptionFileError(ValueError):
    """A captions file that is not a JSON object of strings, or two files that disagree."""


def read_caption_file(path: Path) -> dict[str, str]:
    """``{img_id: text}``; errors name the file and the line or key."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CaptionFileError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    except (OSError, UnicodeDecodeError) as err:
        raise CaptionFileError(f"{path}: cannot read ({err})") from None
    if not isinstance(raw, dict):
        raise CaptionFileError(
            f"{path}: expected a JSON object {{img_id: caption}}, got {type(raw).__name__}"
        )
    for key, value in raw.items():
        if not isinstance(value, str):
            raise CaptionFileError(
                f"{path}: caption of {key!r}: expected a string, got {type(value).__name__}"
            )
    return raw


class CaptionTable:
    """The captions of one source, loaded on first use; look-up by img_id, then by file stem."""

    def __init__(self, templates: str | Sequence[str], split: str | None = None) -> None:
        self.templates = [templates] if isinstance(templates, str) else list(templates)
        self.split = split
        self._captions: dict[str, str] | None = None
        self._by_stem: dict[str, str] = {}
        self.files: list[Path] = []

    @property
    def label(self) -> str:
        return ", ".join(self.templates)

    def _load(self) -> dict[str, str]:
        if self._captions is None:
            merged: dict[str, str] = {}
            origin: dict[str, Path] = {}
            for template in self.templates:
                for path in expand(template, self.split):
                    self.files.append(path)
                    for img_id, text in read_caption_file(path).items():
                        if img_id in merged and merged[img_id] != text:
                            raise CaptionFileError(
                                f"{path}: caption of {img_id!r} differs from the one in {origin[img_id]}"
                            )
                        merged[img_id] = text
                        origin.setdefault(img_id, path)
            self._captions = merged
            self._by_stem = {file_stem(k): v for k, v in merged.items()}
        return self._captions

    def get(self, img_id: str) -> str | None:
        """The caption of an image; ``""`` when the file has an empty one, None when it has none."""
        captions = self._load()
        text = captions.get(img_id)
        if text is None:
            text = self._by_stem.get(file_stem(img_id))
        if text is None:
            return None
        return text if text.strip() else ""

    def __len__(self) -> int:
        return len(self._load())


class CaptionEncoder:
    """Sentence embeddings of captions: the frozen text encoder, mean pooled over tokens.

    Mean pooling (optionally L2-normalised) is the sentence-transformers pipeline of all-MiniLM-L6-v2
    (``1_Pooling``: mean tokens, ``2_Normalize``). Vectors are cached by caption text.
    """

    def __init__(
        self,
        encoder_name: str,
        max_length: int,
        normalize: bool,
        cache_dir: str | Path,
        device: str = "auto",
        batch_size: int = 64,
        progress: bool = False,
    ) -> None:
        self.encoder = FrozenTextEncoder(encoder_name, max_length, device=device, batch_size=batch_size)
        self.normalize = normalize
        self.progress = progress
        self.cache = FeatureCache(
            cache_dir,
            frozen_text_spec(self.encoder, kind="caption", pooling="mean", normalize=normalize),
        )

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _compute(self, texts: list[str]) -> list[dict[str, torch.Tensor]]:
        vectors = self.encoder.run(texts).mean
        if self.normalize:
            vectors = F.normalize(vectors, dim=-1)
        return [{"feats": v} for v in vectors]

    def encode(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Caption text -> ``[d]`` vector, for each distinct text."""
        by_key, entries = compute_longest_first(
            self.cache, self.encoder, texts, self._compute, self.progress, desc="captions"
        )
        return {by_key[k]: e["feats"] for k, e in entries.items()}
