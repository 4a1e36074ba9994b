"""The MNRE scorer: accuracy, micro P/R/F1 over the positive relations, macro-F1, per relation, confusion.

MNRE convention (as in HVPNeT/TMR): ``None`` is the negative class. A prediction counts as a guess when
it is not ``None`` and as correct when it equals a non-``None`` gold label, so a wrong positive label is
both a false positive and a false negative. All values are percentages rounded to 2 decimals; a ratio
with a zero denominator is 0. Definitions in ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pgmre.data.parsing import ParseError, parse_json, shown
from pgmre.data.types import Sample
from pgmre.labels import NEGATIVE_LABEL, RelationVocab


class ScoreError(ValueError):
    """Gold and predictions that cannot be scored (length mismatch, unknown labels, no samples)."""


def _pct(value: float) -> float:
    return round(100.0 * float(value), 2)


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return _ratio(2 * p * r, p + r)


def _encode(labels: Sequence[str], vocab: RelationVocab, what: str) -> np.ndarray:
    ids = np.empty(len(labels), dtype=np.int64)
    for i, label in enumerate(labels):
        if not isinstance(label, str) or label not in vocab:
            raise ScoreError(f"{what} label {label!r} at position {i} is not a known relation")
        ids[i] = vocab.rel2id[label]
    return ids


def _check(gold: Sequence[str], pred: Sequence[str]) -> None:
    if len(gold) != len(pred):
        raise ScoreError(f"{len(gold)} gold labels but {len(pred)} predictions")
    if not gold:
        raise ScoreError("nothing to score: no samples")


def _confusion(gold_ids: np.ndarray, pred_ids: np.ndarray, k: int) -> np.ndarray:
    """Counts of (gold, predicted) id pairs: rows gold, columns predicted."""
    return np.bincount(gold_ids * k + pred_ids, minlength=k * k).reshape(k, k)


def _summary(cm: np.ndarray, negative: int) -> dict[str, float]:
    """Accuracy and micro P/R/F1 (fractions) from a confusion matrix (rows gold, columns predicted)."""
    positive = np.array([i for i in range(cm.shape[0]) if i != negative], dtype=np.int64)
    correct = float(np.trace(cm[np.ix_(positive, positive)]))
    guessed = float(cm[:, positive].sum())
    gold_pos = float(cm[positive, :].sum())
    p, r = _ratio(correct, guessed), _ratio(correct, gold_pos)
    return {
        "accuracy": _ratio(float(np.trace(cm)), float(cm.sum())),
        "precision": p,
        "recall": r,
        "f1": _f1(p, r),
    }


def _subset_score(gold_ids: np.ndarray, pred_ids: np.ndarray, vocab: RelationVocab) -> dict[str, Any]:
    n = len(gold_ids)
    if n == 0:
        return {"n": 0, "accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    summary = _summary(_confusion(gold_ids, pred_ids, len(vocab)), vocab.negative_id)
    return {"n": n, **{k: _pct(v) for k, v in summary.items()}}


def score(gold: Sequence[str], pred: Sequence[str], vocab: RelationVocab) -> dict[str, Any]:
    """Score predicted relation names against gold ones.

    Returns ``n, accuracy, precision, recall, f1, macro_f1, per_relation, confusion``. ``macro_f1``
    averages the F1 of the positive relations that have gold or predicted support.
    ``confusion`` is ``{"labels": [...], "matrix": [[...]]}`` with rows = gold, columns = predicted.
    """
    _check(gold, pred)
    gold_ids, pred_ids = _encode(gold, vocab, "gold"), _encode(pred, vocab, "predicted")
    cm = _confusion(gold_ids, pred_ids, len(vocab))
    summary = _summary(cm, vocab.negative_id)

    per_relation: dict[str, dict[str, Any]] = {}
    macro: list[float] = []
    for idx, name in enumerate(vocab.id2rel):
        tp, predicted, support = int(cm[idx, idx]), int(cm[:, idx].sum()), int(cm[idx, :].sum())
        p, r = _ratio(tp, predicted), _ratio(tp, support)
        per_relation[name] = {
            "precision": _pct(p),
            "recall": _pct(r),
            "f1": _pct(_f1(p, r)),
            "support": support,
            "predicted": predicted,
        }
        if name != NEGATIVE_LABEL and (support or predicted):
            macro.append(_f1(p, r))

    return {
        "n": len(gold),
        **{k: _pct(v) for k, v in summary.items()},
        "macro_f1": _pct(sum(macro) / len(macro)) if macro else 0.0,
        "per_relation": per_relation,
        "confusion": {"labels": list(vocab.id2rel), "matrix": cm.astype(int).tolist()},
    }


def score_samples(
    gold_samples: Sequence[Sample],
    pred_labels: Sequence[str],
    vocab: RelationVocab,
    train_samples: Sequence[Sample] | None = None,
    vocab_path: str | Path | None = None,
) -> dict[str, Any]:
    """:func:`score` on samples; with ``train_samples`` also ``subsets`` = the same metrics on US / UT.

    ``vocab_path`` is the WordPiece vocabulary that defines UT (default: the bundled BERT-uncased one).
    """
    gold: list[str] = []
    for i, sample in enumerate(gold_samples):
        if sample.relation is None:
            raise ScoreError(f"gold sample {i} at {sample.where} has no relation")
        gold.append(sample.relation)
    report = score(gold, pred_labels, vocab)
    if train_samples is not None:
        from pgmre.data.subsets import load_wordpiece_vocab, unseen_mask, untokenizable_mask

        gold_ids, pred_ids = _encode(gold, vocab, "gold"), _encode(pred_labels, vocab, "predicted")
        masks = {
            "unseen": np.array(unseen_mask(gold_samples, train_samples), dtype=bool),
            "untokenizable": np.array(
                untokenizable_mask(gold_samples, load_wordpiece_vocab(vocab_path)), dtype=bool
            ),
        }
        report["subsets"] = {
            name: _subset_score(gold_ids[mask], pred_ids[mask], vocab) for name, mask in masks.items()
        }
    return report


def read_prediction_labels(path: str | Path, vocab: RelationVocab | None = None) -> list[str]:
    """The ``relation`` of every line of a predictions JSONL file (blank lines skipped).

    With ``vocab``, an unknown relation is reported with its line number.
    """
    path = Path(path)
    labels: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ScoreError(f"{path}: cannot read predictions: {err}") from None
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = parse_json(line)
        except ParseError as err:
            raise ScoreError(f"{path}:{lineno}: not a JSON object: {err}") from None
        if not isinstance(record, dict):
            raise ScoreError(f"{path}:{lineno}: expected a JSON object, got {type(record).__name__}")
        if "relation" not in record:
            raise ScoreError(f"{path}:{lineno}: field 'relation' is missing")
        if not isinstance(record["relation"], str):
            raise ScoreError(
                f"{path}:{lineno}: field 'relation' must be a string, got {shown(record['relation'])}"
            )
        if vocab is not None and record["relation"] not in vocab:
            raise ScoreError(
                f"{path}:{lineno}: field 'relation': unknown relation {shown(record['relation'])}"
            )
        labels.append(record["relation"])
    return labels
