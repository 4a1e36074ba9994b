"""Samples in, model batches out: the one path shared by training, evaluation and prediction.

``MREPipeline`` owns everything between a :class:`~pgmre.data.types.Sample` and the model's batch
dict: entity-marker tokenization, entity explanations (from the cache or a backend), visual features
(frozen and cached) and frozen explanation features. A run directory stores what is needed to rebuild
it offline: the resolved config, the relation vocabulary and the tokenizer with its markers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from pgmre.config import Config, ConfigError, load_config
from pgmre.data.types import Sample
from pgmre.encoders.text import (
    EncoderNotFoundError,
    EntityMarkerTokenizer,
    pad_batch,
    pad_explanation_pairs,
    resolve_text_encoder,
)
from pgmre.labels import RelationVocab
from pgmre.runfiles import RunLoadError, describe

TOKENIZER_DIR = "tokenizer"
IGNORE_LABEL = -100


class MREDataset(Dataset):
    """Encoded samples; per-item features are gathered here, padding happens in the collate function."""

    def __init__(
        self,
        samples: Sequence[Sample],
        encodings: list[dict[str, Any]],
        labels: torch.Tensor,
        explanations: list[tuple[str, str]] | None = None,
        explanation_encodings: list[tuple[dict[str, Any], dict[str, Any]]] | None = None,
        explanation_states: tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]
        | None = None,
        visual: tuple[torch.Tensor, torch.Tensor] | None = None,
        phrases: list[dict[str, Any]] | None = None,
        caption_tokens: list[dict[str, Any]] | None = None,
    ) -> None:
        self.samples = list(samples)
        self.encodings = encodings
        self.labels = labels
        self.explanations = explanations
        self.explanation_encodings = explanation_encodings
        # (states [U, L, d], mask [U, L], pooled [U, d], per-sample (head row, tail row))
        self.explanation_states = explanation_states
        self.visual = visual
        self.phrases = phrases  # encoded ``text.phrases``, one per sample
        self.caption_tokens = caption_tokens  # encoded image captions (``visual.captions.image_tokens``)

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"text": self.encodings[i], "label": int(self.labels[i])}
        if self.explanation_encodings is not None:
            item["expl"] = self.explanation_encodings[i]
        if self.explanation_states is not None:
            states, mask, pooled, rows = self.explanation_states
            pair = list(rows[i])
            item["expl_states"], item["expl_mask"], item["expl_pooled"] = (
                states[pair],
                mask[pair],
                pooled[pair],
            )
        if self.phrases is not None:
            item["phrase"] = self.phrases[i]
        if self.caption_tokens is not None:
            item["caption"] = self.caption_tokens[i]
        if self.visual is not None:
            item["visual_feats"] = self.visual[0][i]
            item["visual_mask"] = self.visual[1][i]
        return item


class MREPipeline:
    """Builds datasets, batches and models for one configuration."""

    def __init__(
        self,
        config: Config,
        vocab: RelationVocab,
        tokenizer_dir: str | Path | None = None,
        progress: bool = False,
    ) -> None:
        self.config = config
        # progress bars while filling cold feature caches (minutes on MNRE); off for serving
        self.progress = progress
        self.vocab = vocab
        self.encoder_dir = resolve_text_encoder(config.text.encoder)
        self.tokenizer = EntityMarkerTokenizer(
            str(tokenizer_dir) if tokenizer_dir else self.encoder_dir,
            max_length=config.text.max_length,
            markers=config.text.entity_markers,
            explanation_max_length=config.text.explanation_max_length,
        )
        self._visual: dict[str | None, Any] = {}
        self._frozen_text: Any = None

    # ------------------------------------------------------------------ persistence
    @classmethod
    def from_config(cls, config: Config, progress: bool = False) -> MREPipeline:
        vocab = RelationVocab.from_file(config.data.rel2id) if config.data.rel2id else RelationVocab.mnre()
        return cls(config, vocab, progress=progress)

    @classmethod
    def from_run(
        cls, run_dir: str | Path, overrides: list[str] | None = None, progress: bool = False
    ) -> MREPipeline:
        """The pipeline a run was trained with; a missing or damaged run file raises :class:`RunLoadError`."""
        run_dir = Path(run_dir)
        config_file, vocab_file = run_dir / "config.yaml", run_dir / "rel2id.json"
        tokenizer_dir = run_dir / TOKENIZER_DIR
        if not config_file.is_file():
            fix = "give the directory `pgmre train` wrote"
            raise RunLoadError(run_dir, "not a pgmre run directory (no config.yaml)", fix)
        try:
            config = load_config(config_file, overrides)
        except ConfigError as err:
            raise RunLoadError(config_file, f"damaged run config ({describe(err)})") from err
        try:
            vocab = RelationVocab.from_file(vocab_file)
        except ValueError as err:
            raise RunLoadError(vocab_file, f"damaged relation vocabulary ({describe(err)})") from err
        if not tokenizer_dir.is_dir():
            raise RunLoadError(tokenizer_dir, "missing (the run's tokenizer, with its entity-marker tokens)")
        try:
            return cls(config, vocab, tokenizer_dir=tokenizer_dir, progress=progress)
        except EncoderNotFoundError as err:
            fix = "install it (make install) or correct text.encoder in the run's config.yaml"
            raise RunLoadError(config_file, f"the run's text encoder is not available ({err})", fix) from err
        except Exception as err:  # the tokenizers library raises plain Exception for a damaged tokenizer.json
            raise RunLoadError(tokenizer_dir, f"damaged tokenizer ({describe(err)})") from err

    def save(self, run_dir: str | Path) -> None:
        run_dir = Path(run_dir)
        self.vocab.save(run_dir / "rel2id.json")
        self.tokenizer.save_pretrained(run_dir / TOKENIZER_DIR)

    # ------------------------------------------------------------------ features
    @property
    def uses_explanations(self) -> bool:
        return self.config.model.use_explanations

    @property
    def uses_phrases(self) -> bool:
        return self.config.text.phrases is not None

    @property
    def uses_visual(self) -> bool:
        return self.config.model.use_visual and self.config.visual.source != "none"

    @property
    def uses_caption_tokens(self) -> bool:
        return self.uses_visual and self.config.visual.captions.image_tokens

    def visual(self, split: str | None = None) -> Any:
        """The visual provider of a split (``{split}`` in paths; HVPNeT crop dicts are per split)."""
        if split not in self._visual:
            from pgmre.encoders.visual import build_visual_provider

            self._visual[split] = build_visual_provider(
                self.config.visual,
                self.config.text,
                split=split,
                progress=self.progress,
                expose_crop_count=self.config.protocol == "published",
            )
        return self._visual[split]

    @property
    def frozen_text(self) -> Any:
        if self._frozen_text is None:
            from pgmre.encoders.feature_cache import FrozenTextFeatures

            self._frozen_text = FrozenTextFeatures(
                self.encoder_dir,
                max_length=self.config.text.explanation_max_length,
                cache_dir=self.config.visual.feature_cache,
                progress=self.progress,
            )
        return self._frozen_text

    def feature_caches(self, split: str | None = None) -> list[Any]:
        """The frozen-feature caches that encoding ``split`` uses (built now if not yet)."""
        caches = list(self.visual(split).caches) if self.uses_visual else []
        if self.uses_explanations and self.config.text.explanation_encoder != "shared":
            caches.append(self.frozen_text.cache)
        return caches

    def explanations(self, samples: Sequence[Sample], generate: bool = True) -> list[tuple[str, str]]:
        from pgmre.explain import explanations_for

        return explanations_for(list(samples), self.config.explain, generate=generate, progress=self.progress)

    def dataset(
        self,
        samples: Sequence[Sample],
        explanations: list[tuple[str, str]] | None = None,
        captions: Sequence[str | None] | None = None,
        images: Sequence[Any] | None = None,
        generate_explanations: bool = True,
        split: str | None = None,
        phrases: Sequence[str] | None = None,
        missing: str | None = None,
    ) -> MREDataset:
        """Encode samples; ``explanations``/``captions``/``images``/``phrases`` override the configured sources
        per sample.

        ``split`` (train/dev/test) fills ``{split}`` in the visual paths; None merges every split's files.
        ``missing`` (``error``/``blank``) overrides ``visual.missing`` for this call.
        """
        labels = torch.tensor(
            [self.vocab.encode(s.relation) if s.relation is not None else IGNORE_LABEL for s in samples],
            dtype=torch.long,
        )
        encodings = self.tokenizer.encode_batch(samples)
        image_captions = (
            self._image_captions(samples, captions, split)
            if self.config.text.caption_segment or self.uses_caption_tokens
            else []
        )
        if self.config.text.caption_segment:
            encodings = self.tokenizer.append_segments(
                encodings, image_captions, self.config.text.caption_segment_max_length
            )
        ds = MREDataset(samples, encodings, labels)
        if self.uses_caption_tokens:
            ds.caption_tokens = self.tokenizer.encode_captions(
                image_captions, self.config.visual.captions.image_tokens_max_length
            )
        if self.config.text.phrases is not None:
            if phrases is None:
                from pgmre.data.phrases import phrases_for

                phrases = phrases_for(samples, self.config.text.phrases, split)
            ds.phrases = self.tokenizer.encode_phrases(phrases, self.config.text.phrase_max_words)
        if self.uses_explanations:
            ds.explanations = explanations or self.explanations(samples, generate=generate_explanations)
            if self.config.text.explanation_encoder == "shared":
                flat = self.tokenizer.encode_explanations([t for pair in ds.explanations for t in pair])
                ds.explanation_encodings = [(flat[2 * i], flat[2 * i + 1]) for i in range(len(samples))]
            else:
                ds.explanation_states = self._frozen_explanations(ds.explanations)
        if self.uses_visual:
            batch = self.visual(split).features(samples, captions=captions, images=images, missing=missing)
            ds.visual = (batch.feats.float(), batch.mask.bool())
        return ds

    def _image_captions(
        self, samples: Sequence[Sample], captions: Sequence[str | None] | None, split: str | None
    ) -> list[str]:
        """The caption of each sample for ``text.caption_segment`` and ``visual.captions.image_tokens``:
        the given one, else ``visual.captions.image``'s by img_id; none found is an empty text."""
        # a blank given caption counts as none, as the visual provider's look-up treats it
        given = (
            [c if c and c.strip() else None for c in captions]
            if captions is not None
            else [None] * len(samples)
        )
        image = self.config.visual.captions.image
        assert image is not None  # Config refuses caption_segment and image_tokens without it
        if any(c is None and s.img_id for c, s in zip(given, samples, strict=True)):
            from pgmre.encoders.captions import CaptionTable

            table = CaptionTable(image, split)
            given = [
                table.get(s.img_id) if c is None and s.img_id else c
                for c, s in zip(given, samples, strict=True)
            ]
        return [c or "" for c in given]

    def _frozen_explanations(
        self, explanations: list[tuple[str, str]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[tuple[int, int]]]:
        unique: dict[str, int] = {}
        for pair in explanations:
            for text in pair:
                unique.setdefault(text, len(unique))
        # fp16 holds the cached values exactly and halves memory (MNRE train: ~0.75 GB instead of 1.5 GB)
        states, mask, pooled = self.frozen_text.encode(list(unique), dtype=torch.float16)
        rows = [(unique[h], unique[t]) for h, t in explanations]
        return states, mask, pooled, rows

    # ------------------------------------------------------------------ batching
    def collate(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        batch: dict[str, Any] = pad_batch([it["text"] for it in items], self.tokenizer.pad_token_id)
        labels = torch.tensor([it["label"] for it in items], dtype=torch.long)
        if bool((labels != IGNORE_LABEL).all()):
            batch["labels"] = labels
        if "expl" in items[0]:
            batch.update(pad_explanation_pairs([it["expl"] for it in items], self.tokenizer.pad_token_id))
        if "expl_states" in items[0]:
            mask = torch.stack([it["expl_mask"] for it in items])  # [B, 2, L]
            width = max(int(mask.sum(-1).max()), 1)  # dynamic padding: trim to this batch's longest
            batch["expl_states"] = torch.stack([it["expl_states"] for it in items])[:, :, :width].float()
            batch["expl_attention_mask"] = mask[:, :, :width].long()
            batch["expl_pooled"] = torch.stack([it["expl_pooled"] for it in items]).float()
        if "phrase" in items[0]:
            phrases = pad_batch([it["phrase"] for it in items], self.tokenizer.pad_token_id)
            batch["phrase_input_ids"] = phrases["input_ids"]
            batch["phrase_attention_mask"] = phrases["attention_mask"]
        if "caption" in items[0]:
            caption = pad_batch([it["caption"] for it in items], self.tokenizer.pad_token_id)
            batch["caption_input_ids"] = caption["input_ids"]
            batch["caption_attention_mask"] = caption["attention_mask"]
        if "visual_feats" in items[0]:
            batch["visual_feats"] = torch.stack([it["visual_feats"] for it in items])
            batch["visual_mask"] = torch.stack([it["visual_mask"] for it in items])
        return batch

    # ------------------------------------------------------------------ models
    def build_model(self) -> Any:
        from pgmre.model import PGMRE

        visual = self.visual() if self.uses_visual else None
        return PGMRE(
            self.config.model,
            self.encoder_dir,
            num_labels=len(self.vocab),
            visual_dim=visual.dim if visual is not None else 1,
            vocab_size=self.tokenizer.vocab_size,
            explanation_encoder=self.config.text.explanation_encoder,
            num_visual_slots=visual.num_slots if visual is not None else None,
            use_phrases=self.uses_phrases,
            use_caption_tokens=self.uses_caption_tokens,
        )

    def load_model(self, directory: str | Path) -> Any:
        from pgmre.model import PGMRE

        return PGMRE.from_pretrained(directory)
