"""MNRE scorer on hand-computed examples."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgmre.data.types import Entity, Sample
from pgmre.evaluate.metrics import ScoreError, read_prediction_labels, score, score_samples
from pgmre.labels import RelationVocab

VOCAB = RelationVocab({"None": 0, "a": 1, "b": 2, "c": 3})

# idx:    0    1    2    3    4       5       6       7
GOLD = ["a", "a", "a", "b", "None", "None", "b", "b"]
PRED = ["a", "a", "b", "b", "a", "None", "None", "None"]


def test_hand_computed_example() -> None:
    report = score(GOLD, PRED, VOCAB)
    assert report["n"] == 8
    assert report["accuracy"] == 50.0  # idx 0, 1, 3, 5
    # correct positives: idx 0, 1, 3 = 3; guessed positives: idx 0-4 = 5; gold positives: 0-3, 6, 7 = 6
    assert report["precision"] == 60.0
    assert report["recall"] == 50.0
    assert report["f1"] == 54.55  # 2 * .6 * .5 / 1.1
    a, b, none = (report["per_relation"][k] for k in ("a", "b", "None"))
    assert a == {"precision": 66.67, "recall": 66.67, "f1": 66.67, "support": 3, "predicted": 3}
    assert b == {"precision": 50.0, "recall": 33.33, "f1": 40.0, "support": 3, "predicted": 2}
    assert none == {"precision": 33.33, "recall": 50.0, "f1": 40.0, "support": 2, "predicted": 3}
    # macro over positive classes with support: a and b; c (never gold nor predicted) does not count
    assert report["macro_f1"] == 53.33
    assert report["per_relation"]["c"]["support"] == 0
    assert report["confusion"]["labels"] == ["None", "a", "b", "c"]
    assert report["confusion"]["matrix"] == [
        [1, 1, 0, 0],  # gold None: predicted a once (a false positive), None once
        [0, 2, 1, 0],  # gold a: one wrong positive label (b)
        [2, 0, 1, 0],  # gold b: predicted None twice (false negatives)
        [0, 0, 0, 0],
    ]
    json.dumps(report)  # plain JSON types only


def test_wrong_positive_label_is_both_false_positive_and_false_negative() -> None:
    report = score(["a"], ["b"], VOCAB)
    assert (report["precision"], report["recall"], report["f1"], report["accuracy"]) == (0.0, 0.0, 0.0, 0.0)
    assert report["per_relation"]["a"]["support"] == 1 and report["per_relation"]["b"]["predicted"] == 1
    # Predicting None instead costs only recall: no guess was made.
    half = score(["a", "a"], ["a", "None"], VOCAB)
    assert (half["precision"], half["recall"]) == (100.0, 50.0)
    assert half["f1"] == 66.67
    # A gold None predicted positive costs only precision.
    fp = score(["a", "None"], ["a", "a"], VOCAB)
    assert (fp["precision"], fp["recall"], fp["accuracy"]) == (50.0, 100.0, 50.0)


def test_all_negative_gives_zero_micro_scores_but_full_accuracy() -> None:
    report = score(["None", "None"], ["None", "None"], VOCAB)
    assert report["accuracy"] == 100.0
    assert (report["precision"], report["recall"], report["f1"], report["macro_f1"]) == (0.0, 0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        (["a", "b"], ["a"], "2 gold labels but 1 predictions"),
        ([], [], "no samples"),
        (["a", "zz"], ["a", "a"], "gold label 'zz' at position 1"),
        (["a"], ["/per/unknown"], "predicted label '/per/unknown' at position 0"),
    ],
)
def test_errors(gold: list[str], pred: list[str], message: str) -> None:
    with pytest.raises(ScoreError, match=message):
        score(gold, pred, VOCAB)


def _sample(head: str, tail: str, relation: str | None) -> Sample:
    tokens = (*head.split(), "and", *tail.split())
    n = len(head.split())
    return Sample(tokens, Entity(head, 0, n), Entity(tail, n + 1, len(tokens)), "x.jpg", relation)


def test_score_samples_adds_unseen_and_untokenizable_subsets(tmp_path: Path) -> None:
    vocab_file = tmp_path / "vocab.txt"
    vocab_file.write_text("[PAD]\nada\nlondon\nparis\nbob\n")
    train = [_sample("Ada", "London", "a")]
    gold = [
        _sample("Ada", "London", "a"),  # seen, tokenizable
        _sample("Ada", "Paris", "b"),  # unseen (Paris), tokenizable
        _sample("Bob", "Zork", "a"),  # unseen, untokenizable (zork)
        _sample("ada", "London", "None"),  # unseen: names are case-sensitive; tokenizable (uncased)
    ]
    report = score_samples(gold, ["a", "b", "None", "a"], VOCAB, train_samples=train, vocab_path=vocab_file)
    assert report["n"] == 4 and report["accuracy"] == 50.0
    unseen, untok = report["subsets"]["unseen"], report["subsets"]["untokenizable"]
    # unseen = idx 1, 2, 3: correct 1 of 3; guessed (b, a) = 2, gold positive (b, a) = 2, correct positive 1
    assert unseen == {"n": 3, "accuracy": 33.33, "precision": 50.0, "recall": 50.0, "f1": 50.0}
    assert untok == {"n": 1, "accuracy": 0.0, "precision": 0.0, "recall": 0.0, "f1": 0.0}
    assert "subsets" not in score_samples(gold, ["a", "b", "None", "a"], VOCAB)


def test_score_samples_needs_gold_relations() -> None:
    unlabelled = Sample(("x", "y"), Entity("x", 0, 1), Entity("y", 1, 2), source=("f.txt", 7))
    with pytest.raises(ScoreError, match=r"f\.txt:7 has no relation"):
        score_samples([unlabelled], ["None"], VOCAB)


def test_read_prediction_labels(tmp_path: Path) -> None:
    path = tmp_path / "pred.jsonl"
    path.write_text('{"relation": "a", "score": 0.9}\n\n{"relation": "None"}\n')
    assert read_prediction_labels(path, VOCAB) == ["a", "None"]
    for content, message in [
        ('{"relation": "a"}\n{"label": "a"}\n', r"pred\.jsonl:2: field 'relation' is missing"),
        ('{"relation": 1}\n', "must be a string"),
        ("not json\n", "pred.jsonl:1: not a JSON object"),
        ('["a"]\n', "expected a JSON object"),
        ('{"relation": "q"}\n', "pred.jsonl:1: field 'relation': unknown relation 'q'"),
    ]:
        path.write_text(content)
        with pytest.raises(ScoreError, match=message):
            read_prediction_labels(path, VOCAB)


def test_paired_bootstrap_matches_the_scorer_and_separates_a_clear_winner() -> None:
    from pgmre.evaluate.significance import paired_bootstrap

    gold = GOLD * 20
    perfect = list(gold)
    result = paired_bootstrap(gold, PRED * 20, perfect, VOCAB, resamples=500)
    assert result["f1_a"] == score(gold, PRED * 20, VOCAB)["f1"] == 54.55
    assert result["f1_b"] == 100.0 and result["f1_b_95"] == [100.0, 100.0]
    assert result["delta"] == 45.45 and result["delta_95"][0] > 30
    assert result["p_b_not_better"] == 0.0
    assert result["f1_a_95"][0] < 54.55 < result["f1_a_95"][1]


def test_paired_bootstrap_of_identical_predictions_is_never_better() -> None:
    from pgmre.evaluate.significance import paired_bootstrap

    result = paired_bootstrap(GOLD, PRED, PRED, VOCAB, resamples=200, seed=3)
    assert result["delta"] == 0.0 and result["delta_95"] == [0.0, 0.0]
    assert result["p_b_not_better"] == 1.0
    with pytest.raises(ScoreError, match="predictions"):
        paired_bootstrap(GOLD, PRED, PRED[:-1], VOCAB)
    with pytest.raises(ScoreError, match="'z'"):
        paired_bootstrap(GOLD, PRED, ["z"] * len(GOLD), VOCAB)
