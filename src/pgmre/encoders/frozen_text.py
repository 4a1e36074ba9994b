"""A pretrained text encoder run without gradients: captions (mean pooled) and frozen explanations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch

from pgmre.encoders.text import load_tokenizer, resolve_text_encoder


def pick_device(device: str | torch.device | None) -> torch.device:
    """``auto`` or None -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class TextOutputs:
    """Per-text outputs of one batch, unpadded: ``states[i]`` is ``[len_i, d]``."""

    states: list[torch.Tensor]
    pooled: torch.Tensor | None  # [N, d] BERT pooler output, None when the model has no pooler
    mean: torch.Tensor  # [N, d] attention-masked mean of the token states


class FrozenTextEncoder:
    """Tokenizer + ``AutoModel`` in eval mode; the model is loaded on first use only.

    ``texts_encoded`` counts the texts that really went through the model (cache hits never do).
    """

    def __init__(
        self, encoder_name: str, max_length: int, device: str = "auto", batch_size: int = 64
    ) -> None:
        self.name = encoder_name
        self.path = resolve_text_encoder(encoder_name)
        self.max_length = max_length
        self.device = pick_device(device)
        self.batch_size = batch_size
        self.texts_encoded = 0
        self._model: Any = None
        self._tokenizer: Any = None

    @cached_property
    def dim(self) -> int:
        from transformers import AutoConfig

        return int(AutoConfig.from_pretrained(self.path).hidden_size)

    def _load(self) -> None:
        if self._model is None:
            from transformers import AutoModel

            self._tokenizer = load_tokenizer(self.path)
            self._model = AutoModel.from_pretrained(self.path).to(self.device).eval()

    @torch.inference_mode()
    def run(self, texts: Sequence[str]) -> TextOutputs:
        """Encode ``texts`` in batches (sorted by length, so padding stays small) and restore the order."""
        self._load()
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        states: list[torch.Tensor | None] = [None] * len(texts)
        pooled_rows: list[torch.Tensor] = []
        mean_rows: list[torch.Tensor] = []
        has_pooler = True
        for start in range(0, len(order), self.batch_size):
            idx = order[start : start + self.batch_size]
            enc = self._tokenizer(
                [texts[i] for i in idx],
                truncation=True,
                max_length=self.max_length,
                padding=True,
                return_tensors="pt",
            ).to(self.device)
            out = self._model(**enc)
            hidden = out.last_hidden_state.float()
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            mean_rows.append(((hidden * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu())
            pooler = getattr(out, "pooler_output", None)
            if pooler is None:
                has_pooler = False
            else:
                pooled_rows.append(pooler.float().cpu())
            lengths = enc["attention_mask"].sum(1).tolist()
            for row, i in enumerate(idx):
                states[i] = hidden[row, : int(lengths[row])].cpu()
            self.texts_encoded += len(idx)
        inverse = torch.empty(len(order), dtype=torch.long)
        inverse[torch.tensor(order, dtype=torch.long)] = torch.arange(len(order))
        mean = torch.cat(mean_rows)[inverse] if mean_rows else torch.zeros(0, self.dim)
        pooled = torch.cat(pooled_rows)[inverse] if has_pooler and pooled_rows else None
        return TextOutputs([s for s in states if s is not None], pooled, mean)
