"""Figures for a run: training curves, confusion matrix, prototype usage, 2-D feature projection."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; never needs a display
import matplotlib.pyplot as plt
import numpy as np


def relation_tick_label(label: str) -> str:
    """``/per/per/alternate_names`` -> ``per/per/alternate_names``: the type pair stays, as the last
    segment alone is ambiguous (``alternate_names`` is both a per/per and an org/org relation)."""
    return label.strip("/") or label


def plot_training_curves(metrics_jsonl: Path, out: Path) -> Path | None:
    """Train loss and dev micro-F1 per epoch from ``metrics.jsonl``."""
    if not Path(metrics_jsonl).exists():
        return None
    rows = [json.loads(line) for line in Path(metrics_jsonl).read_text().splitlines() if line.strip()]
    if not rows:
        return None
    epochs = [r["epoch"] for r in rows]
    fig, ax1 = plt.subplots(figsize=(6, 4))
    ax1.plot(epochs, [r["train_loss"] for r in rows], "o-", color="tab:blue", label="train loss")
    ax1.set_xlabel("epoch")
    ax1.set_ylabel("train loss", color="tab:blue")
    if "dev_f1" in rows[0]:
        ax2 = ax1.twinx()
        ax2.plot(epochs, [r["dev_f1"] for r in rows], "s-", color="tab:red", label="dev micro-F1")
        ax2.plot(epochs, [r["dev_accuracy"] for r in rows], "^--", color="tab:orange", label="dev accuracy")
        ax2.set_ylabel("dev metric (%)", color="tab:red")
        ax2.legend(loc="lower right")
    ax1.set_title("Training curves")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_confusion(matrix: Sequence[Sequence[int]], labels: Sequence[str], out: Path) -> Path:
    """Row-normalised confusion matrix (rows: gold, columns: predicted); raw counts annotated."""
    counts = np.asarray(matrix, dtype=float)
    norm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    n = len(labels)
    fig, ax = plt.subplots(figsize=(max(6, 0.45 * n), max(5, 0.4 * n)))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(n), [relation_tick_label(x) for x in labels], rotation=90, fontsize=7)
    ax.set_yticks(range(n), [relation_tick_label(x) for x in labels], fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                ax.text(
                    j,
                    i,
                    str(int(counts[i, j])),
                    ha="center",
                    va="center",
                    fontsize=5,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    fig.colorbar(im, ax=ax, fraction=0.03)
    ax.set_title("Confusion matrix (row-normalised)")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_prototype_usage(
    attr_ids: np.ndarray | None, rel_ids: np.ndarray | None, k: int, t: int, out: Path
) -> Path | None:
    """How many evaluation samples each attribute / relation prototype received."""
    banks = [
        (name, ids, size)
        for name, ids, size in (("attribute", attr_ids, k), ("relation", rel_ids, t))
        if ids is not None
    ]
    if not banks:
        return None
    fig, axes = plt.subplots(1, len(banks), figsize=(5 * len(banks), 3.5), squeeze=False)
    for ax, (name, ids, size) in zip(axes[0], banks, strict=True):
        counts = np.bincount(np.asarray(ids, dtype=int), minlength=size)
        probs = counts / max(counts.sum(), 1)
        perplexity = float(np.exp(-(probs[probs > 0] * np.log(probs[probs > 0])).sum()))
        ax.bar(range(size), counts, color="tab:purple")
        ax.set_title(f"{name} prototypes: {int((counts > 0).sum())}/{size} used, perplexity {perplexity:.1f}")
        ax.set_xlabel("prototype id")
        ax.set_ylabel("samples")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def plot_projection(features: np.ndarray, labels: Sequence[str], out: Path, seed: int = 0) -> Path | None:
    """2-D PCA of the fused features, one colour per gold relation."""
    from sklearn.decomposition import PCA

    if len(features) < 3:
        return None
    xy = PCA(n_components=2, random_state=seed).fit_transform(features)
    names = sorted(set(labels))
    cmap = plt.get_cmap("tab20", max(len(names), 1))
    fig, ax = plt.subplots(figsize=(7, 5.5))
    for i, name in enumerate(names):
        mask = np.array([x == name for x in labels])
        ax.scatter(xy[mask, 0], xy[mask, 1], s=6, alpha=0.7, color=cmap(i), label=relation_tick_label(name))
    ax.legend(fontsize=6, markerscale=2, loc="center left", bbox_to_anchor=(1, 0.5))
    ax.set_title("Fused features (PCA), coloured by gold relation")
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
