"""``text.caption_segment``: the image caption read by the fine-tuned encoder as the post's second segment."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

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


# ---------------------------------------------------------------- visual.captions.image_tokens


def _token_config(ds: SyntheticDataset, tmp_path: Path) -> dict:
    raw = tiny_config(ds, make_tiny_bert(tmp_path / "bert"), tmp_path, train={"epochs": 2})
    raw["visual"]["captions"]["image_tokens"] = True
    raw["visual"]["captions"]["image_tokens_max_length"] = 12
    return raw


def test_caption_tokens_are_the_image_sequence(synthetic_dataset: SyntheticDataset, tmp_path: Path) -> None:
    pipeline = MREPipeline.from_config(config_from_dict(_token_config(synthetic_dataset, tmp_path)))
    samples = load_samples(synthetic_dataset.test, pipeline.vocab)[:4]
    ds = pipeline.dataset(samples)
    table = CaptionTable(str(synthetic_dataset.captions_a))
    for sample, enc in zip(samples, ds.caption_tokens or [], strict=True):
        expected = pipeline.tokenizer.tokenizer(
            table.get(sample.img_id or "") or "", truncation=True, max_length=12
        )
        assert enc["input_ids"] == expected["input_ids"]
    batch = pipeline.collate([ds[i] for i in range(len(samples))])
    assert batch["caption_input_ids"].shape[0] == 4 and batch["caption_input_ids"].shape[1] <= 12
    model = pipeline.build_model().eval()
    assert model.caption_proj is not None
    with torch.no_grad():
        before = model(batch).logits
        # the caption's words now reach the classifier: another caption changes the output ...
        other = pipeline.collate(
            [pipeline.dataset(samples, captions=["zebra zebra zebra"] * 4)[i] for i in range(4)]
        )
        zebra = {**batch, **{k: other[k] for k in ("caption_input_ids", "caption_attention_mask")}}
        assert not torch.allclose(before, model(zebra).logits)
        # ... while the frozen pooled image vector (slot 0) no longer does
        shifted = dict(batch, visual_feats=batch["visual_feats"].clone())
        shifted["visual_feats"][:, 0] += 5.0
        assert torch.allclose(before, model(shifted).logits)
        # a sample without an image caption keeps no F_V token: its caption tokens are ignored
        # a blank given caption is no caption: the file's is read, as for the pooled slot
        blank_given = pipeline.dataset(samples, captions=[" "] * 4).caption_tokens
        assert blank_given == ds.caption_tokens
        no_image = batch["visual_mask"].clone()
        no_image[:, 0] = False
        assert torch.allclose(
            model(dict(batch, visual_mask=no_image)).logits,
            model(dict(zebra, visual_mask=no_image)).logits,
            atol=1e-6,
        )
    # the switch survives save_pretrained / from_pretrained
    model.save_pretrained(tmp_path / "saved")
    loaded = pipeline.load_model(tmp_path / "saved")
    assert loaded.use_caption_tokens
    with torch.no_grad():
        assert torch.allclose(loaded(batch).logits, before, atol=1e-6)


def test_caption_tokens_train_end_to_end(synthetic_dataset: SyntheticDataset, tmp_path: Path) -> None:
    from pgmre.serve.predictor import Predictor
    from pgmre.train.run import run_training

    summary = run_training(config_from_dict(_token_config(synthetic_dataset, tmp_path)), tmp_path / "run")
    rows = [json.loads(x) for x in (summary.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 2 and all(r["train_loss"] > 0 for r in rows)
    predictor = Predictor.from_pretrained(summary.run_dir)
    text = "Ada Lovelace worked with Charles Babbage"
    a = predictor.predict(text, "Ada Lovelace", "Charles Babbage", caption="two people at a desk", top_k=3)
    b = predictor.predict(text, "Ada Lovelace", "Charles Babbage", caption="a red bus in the rain", top_k=3)
    assert a.top_k != b.top_k


@pytest.mark.parametrize(
    ("visual", "model"),
    [
        ({"source": "none"}, {"use_visual": False, "use_rpm": False}),
        ({"source": "caption"}, {"use_visual": False, "use_rpm": False}),
    ],
)
def test_caption_tokens_need_the_caption_visual_path(visual: dict, model: dict) -> None:
    from pgmre.config import ConfigError

    raw = {
        "visual": {**visual, "captions": {"image": "c.json", "image_tokens": True}},
        "model": {**model, "use_explanations": False, "use_apm": False},
    }
    with pytest.raises(ConfigError, match="image_tokens"):
        config_from_dict(raw)
