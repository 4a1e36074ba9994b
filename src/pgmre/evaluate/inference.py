"""Batched inference over an encoded dataset: probabilities, prototype ids and fused features."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from pgmre.precision import autocast, resolve_precision
from pgmre.progress import progress_bar


def move_batch(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    return {
        k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()
    }


@dataclass
class Predictions:
    """Per-sample outputs in dataset order."""

    probs: np.ndarray  # [N, num_labels]
    attr_ids: np.ndarray | None  # [N] assigned attribute prototype, when the APM is on
    rel_ids: np.ndarray | None  # [N] assigned relation prototype, when the RPM is on
    fused: np.ndarray  # [N, d] the classifier's input feature (for projections)

    @property
    def labels(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    def top_k(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        idx = np.argsort(-self.probs, axis=1)[:, :k]
        return idx, np.take_along_axis(self.probs, idx, axis=1)


def _concat(parts: Sequence[torch.Tensor | None]) -> np.ndarray | None:
    if not parts or parts[0] is None:
        return None
    return torch.cat([p for p in parts if p is not None]).cpu().numpy()


def sample_lengths(dataset: Any) -> list[int] | None:
    """Token counts of each post's text, from an encoded dataset (None: the dataset has no encodings)."""
    encodings = getattr(dataset, "encodings", None)
    if encodings is None:
        return None
    return [len(e["input_ids"]) for e in encodings]


def _length_order(dataset: Dataset) -> list[int] | None:
    """Indices sorted by text length, so each batch pads little (outputs are put back in order)."""
    lengths = sample_lengths(dataset)
    if lengths is None:
        return None
    return sorted(range(len(lengths)), key=lengths.__getitem__)


@torch.inference_mode()
def predict_dataset(
    model: nn.Module,
    dataset: Dataset,
    collate: Callable[[list[Any]], dict[str, Any]],
    batch_size: int = 64,
    device: torch.device | None = None,
    progress: bool = False,
    desc: str = "predict",
    precision: str = "fp32",
) -> Predictions:
    """``precision``: ``auto``/``fp32``/``bf16`` (:mod:`pgmre.precision`); outputs are fp32 either way."""
    device = device or next(model.parameters()).device
    arithmetic = resolve_precision(precision, device)
    was_training = model.training
    model.eval()
    order = _length_order(dataset)
    ordered = Subset(dataset, order) if order is not None else dataset
    loader = DataLoader(ordered, batch_size=batch_size, shuffle=False, collate_fn=collate)  # type: ignore[arg-type]
    probs, attr, rel, fused = [], [], [], []
    for batch in progress_bar(loader, desc=desc, enabled=progress, leave=False):
        batch = move_batch(batch, device)
        batch.pop("labels", None)
        with autocast(arithmetic, device):
            out = model(batch)
        probs.append(torch.softmax(out.logits.float(), dim=-1))
        attr.append(out.attr_ids)
        rel.append(out.rel_ids)
        fused.append(out.fused.float())
    model.train(was_training)
    result = Predictions(
        probs=torch.cat(probs).cpu().numpy() if probs else np.zeros((0, 0), dtype=np.float32),
        attr_ids=_concat(attr),
        rel_ids=_concat(rel),
        fused=torch.cat(fused).cpu().numpy() if fused else np.zeros((0, 0), dtype=np.float32),
    )
    if order is None or not order:
        return result
    restore = np.argsort(np.asarray(order))
    return Predictions(
        probs=result.probs[restore],
        attr_ids=None if result.attr_ids is None else result.attr_ids[restore],
        rel_ids=None if result.rel_ids is None else result.rel_ids[restore],
        fused=result.fused[restore],
    )
