"""The prediction API on tiny trained runs: inputs, entity look-up, images, explanations, batching."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.data.types import Sample
from pgmre.evaluate.inference import predict_dataset
from pgmre.serve.inputs import InputError, resolve_entity, tokenize
from pgmre.serve.predictor import Predictor, infer


@pytest.fixture(scope="module")
def caption_predictor(trained_caption_run: Path) -> Predictor:
    return Predictor.from_pretrained(trained_caption_run)


@pytest.fixture(scope="module")
def image_predictor(trained_image_run: Path) -> Predictor:
    return Predictor.from_pretrained(trained_image_run, device="cpu")


@pytest.fixture(scope="module")
def test_samples(synthetic_dataset: SyntheticDataset) -> list[Sample]:
    return load_samples(synthetic_dataset.test)


def captions(ds: SyntheticDataset) -> dict[str, str]:
    return json.loads(ds.captions_a.read_text())


# ---------------------------------------------------------------- inputs


def test_tokenize_splits_punctuation_and_keeps_offsets() -> None:
    text = "RT @fan: JFK and Obama's visit to Harvard. https://t.co/x1 #USA"
    post = tokenize(text)
    assert post.tokens == (
        "RT", "@fan", ":", "JFK", "and", "Obama", "'s", "visit", "to", "Harvard", ".", "https://t.co/x1", "#USA",
    )  # fmt: skip
    assert all(text[s:e] == tok for tok, (s, e) in zip(post.tokens, post.offsets, strict=True))
    given = tokenize(["Obama", "in", "Paris"])
    assert given.text == "Obama in Paris" and given.offsets[2] == (9, 14)
    with pytest.raises(InputError, match="empty"):
        tokenize("   ")
    with pytest.raises(InputError, match="whitespace"):
        tokenize(["New York", "rocks"])


def test_entities_by_name_span_and_characters() -> None:
    post = tokenize("Obama met Michelle Obama in Paris , then Paris again")
    assert resolve_entity("Michelle Obama", post, "head").to_dict() == {
        "name": "Michelle Obama",
        "pos": [2, 4],
    }
    assert resolve_entity("michelle obama", post, "head").start == 2  # case-insensitive fallback
    assert resolve_entity((5, 6), post, "tail").name == "Paris"
    assert resolve_entity({"name": "Paris", "pos": [8, 9]}, post, "tail").start == 8
    assert resolve_entity({"chars": [12, 16]}, post, "head").name == "Michelle"  # "chel" snaps to the token
    assert resolve_entity({"name": "Michelle Obama", "chars": [10, 24]}, post, "head").end == 4
    with pytest.raises(InputError, match=r"tail: 'Paris' occurs 2 times \(token spans \[5, 6\), \[8, 9\)\)"):
        resolve_entity("Paris", post, "tail")
    with pytest.raises(InputError, match="head: 'Berlin' does not occur in the text"):
        resolve_entity("Berlin", post, "head")
    with pytest.raises(InputError, match="not the text of tokens"):
        resolve_entity({"name": "Lyon", "pos": [5, 6]}, post, "tail")
    with pytest.raises(InputError, match="outside the 10 tokens"):
        resolve_entity([9, 11], post, "tail")
    with pytest.raises(InputError, match="unknown keys"):
        resolve_entity({"name": "Paris", "start": 5}, post, "tail")


# ---------------------------------------------------------------- caption run (explanations, APM, RPM)


def test_prediction_matches_the_pipeline(
    caption_predictor: Predictor, test_samples: list[Sample], synthetic_dataset: SyntheticDataset
) -> None:
    """Text + names in give what the training/evaluation pipeline gives for the same sample."""
    sample = test_samples[0]
    caption = captions(synthetic_dataset)[sample.img_id or ""]
    got = caption_predictor.predict(sample.text, sample.head.name, sample.tail.name, caption=caption, top_k=5)

    pipeline = caption_predictor.pipeline
    bare = Sample(sample.tokens, sample.head, sample.tail)
    dataset = pipeline.dataset([bare], captions=[caption])
    expected = predict_dataset(caption_predictor.model, dataset, pipeline.collate).probs[0]
    order = np.argsort(-expected)[:5]
    assert [r for r, _ in got.top_k] == [pipeline.vocab.decode(int(i)) for i in order]
    assert np.allclose([p for _, p in got.top_k], expected[order], atol=1e-5)
    assert got.relation == got.top_k[0][0] and got.probability == got.top_k[0][1]
    assert (got.head, got.tail) == (sample.head, sample.tail)
    assert got.explanations is not None and got.explanations[0].startswith(sample.head.name)
    assert got.attribute_prototype is not None and 0 <= got.attribute_prototype < 4
    assert got.relation_prototype is not None and 0 <= got.relation_prototype < 4
    assert got.visual_slots == 1  # the given caption; the object-caption slot knows no new post
    record = got.to_dict()
    assert record["relation"] == got.relation and len(record["top_k"]) == 5
    assert json.loads(json.dumps(record)) == record


def test_explanations_given_are_used(
    caption_predictor: Predictor, test_samples: list[Sample], synthetic_dataset: SyntheticDataset
) -> None:
    sample = test_samples[1]
    args = (sample.tokens, sample.head.name, sample.tail.name)
    caption = captions(synthetic_dataset)[sample.img_id or ""]
    generated = caption_predictor.predict(*args, caption=caption, top_k=23)
    given = caption_predictor.predict(
        *args,
        caption=caption,
        explanations={"head": "A river in Norway.", "tail": "A brand of tea."},
        top_k=23,
    )
    assert generated.explanations is not None and generated.explanations[1].startswith(sample.tail.name)
    assert given.explanations == ("A river in Norway.", "A brand of tea.")
    # Explanations guide the attention over the visual slots (eqs. 9-10): the probabilities move.
    assert dict(given.top_k) != dict(generated.top_k)
    blank = caption_predictor.predict(*args, top_k=23)
    assert blank.visual_slots == 0  # no caption given, no img_id: blank visual slots


def test_batch_equals_single_predictions(caption_predictor: Predictor, test_samples: list[Sample]) -> None:
    inputs: list[dict[str, Any]] = [
        {"text": list(s.tokens), "head": s.head.to_dict(), "tail": s.tail.to_dict()} for s in test_samples[:6]
    ]
    batch = caption_predictor.predict_batch(inputs, top_k=2, batch_size=4)
    single = [caption_predictor.predict(**post, top_k=2) for post in inputs[:3]]
    assert [p.relation for p in batch[:3]] == [p.relation for p in single]
    assert np.allclose([p.probability for p in batch[:3]], [p.probability for p in single], atol=1e-5)
    bad = [*inputs[:2], {"text": "no entities here", "head": "Paris", "tail": "here"}]
    with pytest.raises(InputError, match="input 2: head: 'Paris' does not occur"):
        caption_predictor.predict_batch(bad)


def test_bad_inputs_are_clear_errors(caption_predictor: Predictor) -> None:
    text = "Jonas Berg joined Summit Bank"
    with pytest.raises(InputError, match="does not use images"):
        caption_predictor.predict(text, "Jonas Berg", "Summit Bank", image=b"not used")
    with pytest.raises(InputError, match="same tokens"):
        caption_predictor.predict(text, "Summit Bank", [3, 5])
    with pytest.raises(InputError, match="missing field"):
        caption_predictor.predict_batch([{"text": text, "head": "Jonas Berg"}])
    with pytest.raises(InputError, match="top_k"):
        caption_predictor.predict(text, "Jonas Berg", "Summit Bank", top_k=0)


def test_infer_and_lazy_export(trained_caption_run: Path, caption_predictor: Predictor) -> None:
    text, head, tail = "Jonas Berg joined Summit Bank", "Jonas Berg", "Summit Bank"
    one = infer(trained_caption_run, text, head, tail)
    assert one == caption_predictor.predict(text, head, tail)
    probe = "import sys, pgmre; assert 'torch' not in sys.modules; print(pgmre.Predictor.__name__)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "Predictor"


# ---------------------------------------------------------------- image run (tiny ViT, automatic crops)


def test_image_from_path_pil_or_bytes(
    image_predictor: Predictor, test_samples: list[Sample], synthetic_dataset: SyntheticDataset
) -> None:
    sample = test_samples[2]
    path = synthetic_dataset.image_dir / (sample.img_id or "")
    args = (sample.text, sample.head.name, sample.tail.name)
    from_path = image_predictor.predict(*args, image=path, top_k=23)
    with Image.open(path) as img:
        from_pil = image_predictor.predict(*args, image=img.copy(), top_k=23)
    without = image_predictor.predict(*args, top_k=23)
    assert from_path.visual_slots == 3  # the image and two automatic crops
    assert without.visual_slots == 0
    assert from_path.to_dict() == from_pil.to_dict()  # same pixels, whatever the container
    assert dict(from_path.top_k) != dict(without.top_k)
    assert from_path.explanations is None and from_path.attribute_prototype is None


def test_unreadable_images_are_refused(image_predictor: Predictor, tmp_path: Path) -> None:
    args = ("Jonas Berg joined Summit Bank", "Jonas Berg", "Summit Bank")
    with pytest.raises(InputError, match="not a readable image"):
        image_predictor.predict(*args, image=b"GIF89a but not really")
    with pytest.raises(InputError, match="cannot read"):
        image_predictor.predict(*args, image=tmp_path / "absent.jpg")
    with pytest.raises(InputError, match="does not use captions"):
        image_predictor.predict(*args, caption="a red circle")
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    with pytest.raises(InputError, match="trained without entity explanations"):
        image_predictor.predict(*args, image=buffer.getvalue(), explanations=("a", "b"))
