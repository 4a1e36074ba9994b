"""MNRE US / UT subsets on small hand-made files."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmre.data.mnre import load_samples
from pgmre.data.subsets import (
    bundled_vocab_path,
    load_wordpiece_vocab,
    subset_counts,
    unseen_mask,
    untokenizable_mask,
    untokenizable_words,
)


def _line(head: str, tail: str, relation: str = "None") -> str:
    tokens = [*head.split(), "meets", *tail.split()]
    n = len(head.split())
    record = {
        "token": tokens,
        "h": {"name": head, "pos": [0, n]},
        "t": {"name": tail, "pos": [n + 1, len(tokens)]},
        "img_id": "x.jpg",
        "relation": relation,
    }
    return repr(record) + "\n"


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    train = tmp_path / "train.txt"
    train.write_text(_line("Ada Lovelace", "London") + _line("Charles", "Paris"))
    evaluation = tmp_path / "val.txt"
    evaluation.write_text(
        _line("Ada Lovelace", "Paris")  # both names seen (as head / as tail does not matter)
        + _line("London", "Ada Lovelace")  # seen, roles swapped
        + _line("ada lovelace", "London")  # unseen: names compare case-sensitively
        + _line("Grace Hopper", "Paris")  # unseen head
        + _line("Charles", "Zürich")  # unseen tail
    )
    return train, evaluation


def test_unseen_is_exact_case_sensitive_name_membership(files: tuple[Path, Path]) -> None:
    train, evaluation = (load_samples(p) for p in files)
    assert unseen_mask(evaluation, train) == [False, False, True, True, True]


def test_untokenizable_with_a_given_vocab(files: tuple[Path, Path], tmp_path: Path) -> None:
    vocab_file = tmp_path / "vocab.txt"
    # uncased entries; "zurich" matches "Zürich" only because basic tokenisation strips accents
    vocab_file.write_text("[UNK]\nada\nlovelace\nlondon\nparis\ncharles\nzurich\ngrace\n")
    vocab = load_wordpiece_vocab(vocab_file)
    evaluation = load_samples(files[1])
    assert untokenizable_mask(evaluation, vocab) == [False, False, False, True, False]
    assert untokenizable_words("Grace Hopper", vocab) == ["hopper"]
    assert untokenizable_words("Ada's", vocab) == ["'", "s"]  # punctuation is split off, then looked up
    assert load_wordpiece_vocab(tmp_path) == vocab  # a tokenizer directory works too
    assert subset_counts(evaluation, load_samples(files[0]), vocab_file) == {
        "n": 5,
        "unseen": 3,
        "untokenizable": 1,
    }


def test_bundled_bert_uncased_vocab() -> None:
    vocab = load_wordpiece_vocab()
    assert bundled_vocab_path().name == "vocab.txt"
    assert len(vocab) == 30522
    assert untokenizable_words("Lisbon Kyoto", vocab) == []
    assert untokenizable_words("Qorvane Tillaby", vocab) == ["qorvane", "tillaby"]


def test_missing_vocab_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="cannot read WordPiece vocabulary"):
        load_wordpiece_vocab(tmp_path / "nope.txt")
