"""``text.caption_segment``: the image caption read by the fine-tuned encoder as the post's second segment."""

from __future__ import annotations

from pathlib import Path

import pytest

from pgmre.config import config_from_dict
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.data.types import Entity, Sample
from pgmre.encoders.captions import CaptionTable
from pgmre.encoders.text import EntityMarkerTokenizer, resolve_text_encoder
from pgmre.pipeline import MREPipeline
from test_encoders_bundled import _mpnet_installed
from test_train import tiny_config

from tiny import make_tiny_bert

SAMPLE = Sample(
    tokens=tuple(["Ada", "Lovelace", "worked", "with", "Charles", "Babbage"]),
    head=Entity("Ada Lovelace", 0, 2),
    tail=Entity("Charles Babbage", 4, 6),
)


def _tokens(tokenizer: EntityMarkerTokenizer, caption: str, max_length: int = 64) -> list[str]:
    enc = tokenizer.append_segments(tokenizer.encode_batch([SAMPLE]), [caption], max_length)[0]
    assert len(enc["attention_mask"]) == len(enc["input_ids"])
    return tokenizer.tokenizer.convert_ids_to_tokens(enc["input_ids"])


def test_bert_pair_layout_and_entity_indices() -> None:
    tokenizer = EntityMarkerTokenizer(resolve_text_encoder("bundled:minilm"), max_length=32)
    plain = tokenizer.encode_batch([SAMPLE])[0]
    enc = tokenizer.append_segments([plain], ["two men at a desk"], 64)[0]
    assert enc["head_index"] == plain["head_index"] and enc["tail_index"] == plain["tail_index"]
    tokens = _tokens(tokenizer, "two men at a desk")
    post = tokenizer.tokenizer.convert_ids_to_tokens(plain["input_ids"])
    assert tokens == [*post, "two", "men", "at", "a", "desk", "[SEP]"]
    assert _tokens(tokenizer, "") == [*post, "[SEP]"]
    assert len(_tokens(tokenizer, "word " * 100, max_length=5)) == len(post) + 6  # truncated to 5 + [SEP]
    with pytest.raises(ValueError, match="1 segment texts for 2 samples"):
        tokenizer.append_segments([plain, plain], ["x"], 8)


@pytest.mark.skipif(not _mpnet_installed(), reason="the all-mpnet-base-v2 part packages are not installed")
def test_mpnet_pair_layout() -> None:
    tokenizer = EntityMarkerTokenizer(resolve_text_encoder("bundled:mpnet"), max_length=32)
    tokens = _tokens(tokenizer, "a desk")
    assert tokens[0] == "<s>" and tokens[-4:] == ["</s>", "a", "desk", "</s>"]
    assert tokens.count("</s>") == 3  # <s> post </s></s> caption </s>


def test_pipeline_appends_each_sample_caption(synthetic_dataset: SyntheticDataset, tmp_path: Path) -> None:
    encoder = make_tiny_bert(tmp_path / "bert")
    raw = tiny_config(synthetic_dataset, encoder, tmp_path, text={"caption_segment": True})
    raw["visual"]["source"] = "none"
    raw["model"]["use_visual"] = False
    raw["model"]["use_rpm"] = False
    pipeline = MREPipeline.from_config(config_from_dict(raw))
    samples = load_samples(synthetic_dataset.test, pipeline.vocab)
    with_caption = pipeline.dataset(samples)
    table = CaptionTable(str(synthetic_dataset.captions_a))
    sep = pipeline.tokenizer.tokenizer.sep_token_id
    for sample, enc in zip(samples, with_caption.encodings, strict=True):
        caption = table.get(sample.img_id or "") or ""
        expected = pipeline.tokenizer.tokenizer(
            caption, add_special_tokens=False, truncation=True, max_length=64
        )
        assert enc["input_ids"][-len(expected["input_ids"]) - 1 :] == [*expected["input_ids"], sep]
    # a caption given with the input (a new post) replaces the file's
    given = pipeline.dataset(samples[:1], captions=["zebra"])
    assert pipeline.tokenizer.tokenizer.convert_ids_to_tokens(given.encodings[0]["input_ids"])[-2:] == [
        "zebra",
        "[SEP]",
    ]
    model = pipeline.build_model()
    out = model(pipeline.collate([with_caption[i] for i in range(4)]))
    assert out.logits.shape == (4, len(pipeline.vocab))


def test_the_segment_needs_a_caption_file() -> None:
    from pgmre.config import ConfigError

    with pytest.raises(ConfigError, match=r"visual\.captions\.image"):
        config_from_dict({"text": {"caption_segment": True}})
