"""Caption visual source: MLLM descriptions encoded by a frozen (tiny random) BERT, mean pooled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from pgmre.config import CaptionConfig, VisualConfig
from pgmre.data.types import Entity, Sample
from pgmre.encoders.captions import CaptionFileError
from pgmre.encoders.missing import MissingInputError
from pgmre.encoders.visual import CaptionFeatures, build_visual_provider

from tiny import make_tiny_bert

TRAIN = {"a.jpg": "A man in a suit waves at a crowd.", "b.jpg": "Two players hold a golden trophy."}
VAL = {"c.jpg": "A red car on a race track."}
OBJECTS = {"a.jpg": "a man; a crowd", "b.jpg": "two players; a trophy", "c.jpg": "a car"}


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert_captions"))


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "caps_train.json").write_text(json.dumps(TRAIN))
    (tmp_path / "caps_val.json").write_text(json.dumps(VAL))
    (tmp_path / "objs.json").write_text(json.dumps(OBJECTS))
    return tmp_path


def posts(*img_ids: str | None) -> list[Sample]:
    return [
        Sample(("Obama", "in", "Berlin"), Entity("Obama", 0, 1), Entity("Berlin", 2, 3), i) for i in img_ids
    ]


def cfg(
    files: Path,
    encoder: Path | None = None,
    image: str | list[str] | None = "caps_{split}.json",
    **kw: object,
) -> VisualConfig:
    image_paths = [str(files / p) for p in image] if isinstance(image, list) else image and str(files / image)
    return VisualConfig(
        source="caption",
        captions=CaptionConfig(
            image=image_paths, objects=[str(files / "objs.json")], encoder=str(encoder) if encoder else None
        ),
        feature_cache=str(files / "cache"),
        device="cpu",
        **kw,  # type: ignore[arg-type]
    )


def provider(files: Path, tiny_bert: Path, split: str | None = None, **kw: object) -> CaptionFeatures:
    built = build_visual_provider(cfg(files, tiny_bert, **kw), split=split)  # type: ignore[arg-type]
    assert isinstance(built, CaptionFeatures)
    return built


def mean_pooled(tiny_bert: Path, text: str) -> torch.Tensor:
    from transformers import AutoModel, AutoTokenizer

    enc = AutoTokenizer.from_pretrained(tiny_bert)(text, return_tensors="pt")
    with torch.no_grad():
        states = AutoModel.from_pretrained(tiny_bert).eval()(**enc).last_hidden_state[0]
    return F.normalize(states.mean(0), dim=-1)


def test_slots_hold_image_and_object_captions(files: Path, tiny_bert: Path) -> None:
    visual = provider(files, tiny_bert, split="train")
    assert visual.dim == 32 and visual.num_slots == 4
    batch = visual.features(posts("a.jpg", "b.jpg", "a.jpg"))
    assert batch.feats.shape == (3, 4, 32)
    assert batch.mask.tolist() == [[True, True, False, False]] * 3  # one object source: slots 2, 3 masked
    assert torch.allclose(batch.feats[0, 0], mean_pooled(tiny_bert, TRAIN["a.jpg"]), atol=1e-5)
    assert torch.allclose(batch.feats[1, 1], mean_pooled(tiny_bert, OBJECTS["b.jpg"]), atol=1e-5)
    assert torch.equal(batch.feats[0], batch.feats[2])
    assert not batch.report
    assert visual.encoder.encoder.texts_encoded == 4  # distinct texts only


def test_text_encoder_is_the_default_caption_encoder(files: Path, tiny_bert: Path) -> None:
    from pgmre.config import TextConfig

    visual = build_visual_provider(cfg(files), TextConfig(encoder=str(tiny_bert)), split="train")
    assert visual.dim == 32
    visual = build_visual_provider(cfg(files, tiny_bert), TextConfig(encoder="bundled:minilm"), split="train")
    assert visual.dim == 32  # captions.encoder wins


def test_split_placeholder_picks_val_for_dev_and_merges_without_split(files: Path, tiny_bert: Path) -> None:
    dev = provider(files, tiny_bert, split="dev", missing="blank")
    assert dev.features(posts("c.jpg", "a.jpg")).mask[:, 0].tolist() == [True, False]
    merged = provider(files, tiny_bert, split=None)
    assert merged.features(posts("a.jpg", "c.jpg")).mask[:, 0].all()
    listed = provider(files, tiny_bert, image=["caps_train.json", "caps_val.json"])
    assert listed.features(posts("b.jpg", "c.jpg")).mask[:, 0].all()


def test_missing_caption_raises_naming_the_image(files: Path, tiny_bert: Path) -> None:
    with pytest.raises(MissingInputError, match=r"2 missing caption\(s\), e\.g\. zzz\.jpg \(no caption in"):
        provider(files, tiny_bert, split="train").features(posts("a.jpg", "zzz.jpg", None))


def test_blank_policy_masks_and_reports(files: Path, tiny_bert: Path) -> None:
    (files / "objs.json").write_text(json.dumps({**OBJECTS, "b.jpg": " "}))  # BLIP has empty ones on MNRE
    batch = provider(files, tiny_bert, split="train", missing="blank").features(
        posts("a.jpg", "zzz.jpg", None, "b.jpg")
    )
    assert batch.mask[:, :2].tolist() == [[True, True], [False, False], [False, False], [True, False]]
    assert batch.feats[1:3].eq(0).all() and batch.feats[3, 1].eq(0).all()
    assert batch.report.counts == {"caption": 2, "object_caption": 3}
    summary = batch.report.summary()
    assert "sample has no img_id" in summary and "b.jpg (empty caption in" in summary


def test_caption_given_with_a_new_post(files: Path, tiny_bert: Path) -> None:
    visual = provider(files, tiny_bert, split="train")
    known = visual.features(posts("a.jpg"))
    for name in ("caps_train.json", "objs.json"):  # e.g. served on a machine without the dataset
        (files / name).unlink()
    served = provider(files, tiny_bert, split="train")
    batch = served.features(posts("upload-1"), captions=["A man in a suit waves at a crowd."])
    assert torch.equal(batch.feats[0, 0], known.feats[0, 0])
    assert batch.mask[0].tolist() == [True, False, False, False]
    assert served.encoder.encoder.texts_encoded == 0  # the caption's vector came from the cache


def test_cache_is_reused_and_only_a_changed_caption_is_encoded(files: Path, tiny_bert: Path) -> None:
    first = provider(files, tiny_bert, split="train")
    before = first.features(posts("a.jpg", "b.jpg"))
    assert first.encoder.encoder.texts_encoded == 4
    again = provider(files, tiny_bert, split="train")
    assert torch.equal(again.features(posts("a.jpg", "b.jpg")).feats, before.feats)
    assert again.encoder.encoder.texts_encoded == 0 and again.cache_stats == {"hits": 4, "misses": 0}
    (files / "caps_train.json").write_text(json.dumps({**TRAIN, "b.jpg": "Three players and a trophy."}))
    changed = provider(files, tiny_bert, split="train")
    after = changed.features(posts("a.jpg", "b.jpg"))
    assert changed.encoder.encoder.texts_encoded == 1
    assert torch.equal(after.feats[0], before.feats[0]) and not torch.equal(
        after.feats[1, 0], before.feats[1, 0]
    )


def test_bad_caption_files_are_named(files: Path, tiny_bert: Path) -> None:
    (files / "caps_train.json").write_text('{"a.jpg": "ok",\n "b.jpg": 3}')
    with pytest.raises(CaptionFileError, match=r"caps_train\.json: caption of 'b\.jpg': expected a string"):
        provider(files, tiny_bert, split="train").features(posts("a.jpg"))
    (files / "caps_train.json").write_text('{"a.jpg": "ok",\n "b.jpg" "x"}')
    with pytest.raises(CaptionFileError, match=r"caps_train\.json:2: not valid JSON"):
        provider(files, tiny_bert, split="train").features(posts("a.jpg"))
    (files / "caps_val.json").write_text(json.dumps({"a.jpg": "a different text"}))
    (files / "caps_train.json").write_text(json.dumps(TRAIN))
    with pytest.raises(CaptionFileError, match="differs from the one in"):
        provider(files, tiny_bert, split=None).features(posts("a.jpg"))
    with pytest.raises(FileNotFoundError, match=r"caps_test\.json"):
        provider(files, tiny_bert, split="test").features(posts("a.jpg"))


def test_more_object_sources_than_slots_is_a_config_error(files: Path) -> None:
    with pytest.raises(ValueError, match="num_objects"):
        build_visual_provider(cfg(files, num_objects=0))


def test_pipeline_shows_progress_only_while_filling_a_cold_cache(
    files: Path, tiny_bert: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from pgmre.config import Config, TextConfig
    from pgmre.pipeline import MREPipeline

    def progress_lines() -> list[str]:  # stderr is not a terminal here: progress comes as log lines
        lines = [r.getMessage() for r in caplog.records if r.name == "pgmre.progress"]
        caplog.clear()
        return lines

    caplog.set_level("INFO", logger="pgmre.progress")
    config = Config(text=TextConfig(encoder=str(tiny_bert)), visual=cfg(files, tiny_bert))
    MREPipeline.from_config(config, progress=True).visual("train").features(posts("a.jpg", "b.jpg"))
    assert any(line.startswith("captions: 4/4") for line in progress_lines())  # the cold pass over 4 captions
    MREPipeline.from_config(config, progress=True).visual("train").features(posts("a.jpg", "b.jpg"))
    MREPipeline.from_config(config).visual("dev").features(posts("c.jpg"))  # cold, but progress off
    assert progress_lines() == []
