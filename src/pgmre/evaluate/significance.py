"""Paired bootstrap over samples: is one model's micro-F1 really above another's on the same data?

MNRE val has about 620 positive samples, so micro-F1 differences of a point or two between ablations
can be noise; the paired bootstrap (Koehn 2004; Berg-Kirkpatrick et al. 2012) resamples the samples
with replacement and scores both prediction lists on each resample.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from pgmre.evaluate.metrics import _check, _encode
from pgmre.labels import RelationVocab


def _micro_f1(gold: np.ndarray, pred: np.ndarray, negative: int) -> np.ndarray:
    """Micro-F1 (fraction) of every row of index-aligned [R, N] label arrays, ``negative`` excluded."""
    correct = ((gold == pred) & (gold != negative)).sum(axis=1)
    guessed = (pred != negative).sum(axis=1)
    positive = (gold != negative).sum(axis=1)
    p = np.divide(correct, guessed, out=np.zeros(len(gold)), where=guessed > 0)
    r = np.divide(correct, positive, out=np.zeros(len(gold)), where=positive > 0)
    return np.divide(2 * p * r, p + r, out=np.zeros(len(gold)), where=(p + r) > 0)


def paired_bootstrap(
    gold: Sequence[str],
    pred_a: Sequence[str],
    pred_b: Sequence[str],
    vocab: RelationVocab,
    resamples: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """Micro-F1 of A and B, 95% intervals, and how often B does not beat A over ``resamples`` resamples.

    ``p_b_not_better`` is the one-sided bootstrap p-value of "B's micro-F1 is higher than A's".
    """
    _check(gold, pred_a)
    _check(gold, pred_b)
    g = _encode(gold, vocab, "gold")
    a, b = _encode(pred_a, vocab, "A"), _encode(pred_b, vocab, "B")
    idx = np.random.default_rng(seed).integers(0, len(g), size=(resamples, len(g)))
    neg = vocab.negative_id
    f1_a, f1_b = _micro_f1(g[idx], a[idx], neg), _micro_f1(g[idx], b[idx], neg)
    full_a, full_b = (float(_micro_f1(g[None], x[None], neg)[0]) for x in (a, b))
    diff = f1_b - f1_a

    def interval(x: np.ndarray) -> list[float]:
        return [round(100 * float(v), 2) for v in np.percentile(x, [2.5, 97.5])]

    return {
        "f1_a": round(100 * full_a, 2),
        "f1_b": round(100 * full_b, 2),
        "f1_a_95": interval(f1_a),
        "f1_b_95": interval(f1_b),
        "delta": round(100 * (full_b - full_a), 2),
        "delta_95": interval(diff),
        "p_b_not_better": round(float((diff <= 0).mean()), 4),
        "resamples": resamples,
    }
