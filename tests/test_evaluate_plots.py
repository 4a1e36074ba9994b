"""Figure labels: every relation keeps its type pair, so no two ticks read the same."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pytest

from pgmre.evaluate.plots import plot_confusion, relation_tick_label
from pgmre.labels import RelationVocab


def test_relation_labels_keep_the_type_pair(mnre_vocab: RelationVocab) -> None:
    labels = list(mnre_vocab.id2rel)
    ticks = [relation_tick_label(label) for label in labels]
    assert len(set(ticks)) == len(labels)  # "alternate_names" alone named two relations (issue 19)
    assert relation_tick_label("/per/per/alternate_names") == "per/per/alternate_names"
    assert relation_tick_label("/org/org/alternate_names") == "org/org/alternate_names"
    assert relation_tick_label("None") == "None"


def test_confusion_matrix_ticks_are_distinct(
    mnre_vocab: RelationVocab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = list(mnre_vocab.id2rel)
    figures = []
    monkeypatch.setattr(plt, "close", figures.append)  # keep the figure to read its ticks
    matrix = [[int(i == j) for j in range(len(labels))] for i in range(len(labels))]
    out = plot_confusion(matrix, labels, tmp_path / "confusion.png")
    assert out.stat().st_size > 0
    axes = figures[0].axes[0]
    for ticks in (axes.get_xticklabels(), axes.get_yticklabels()):
        names = [tick.get_text() for tick in ticks]
        assert len(set(names)) == len(labels) and "per/per/alternate_names" in names
