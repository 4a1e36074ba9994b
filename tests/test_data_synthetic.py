"""Synthetic MNRE-format dataset: valid, deterministic, real images, captions, subsets, learnable."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from pgmre.data.mnre import load_samples, read_samples
from pgmre.data.subsets import subset_counts
from pgmre.data.synthetic import SyntheticDataset, make_synthetic_dataset
from pgmre.data.types import Sample
from pgmre.labels import RelationVocab


def test_valid_under_the_strict_reader(
    synthetic_dataset: SyntheticDataset, mnre_vocab: RelationVocab
) -> None:
    sizes = {}
    for split, path in synthetic_dataset.splits.items():
        result = read_samples(path, mnre_vocab, strict=True)
        assert result.format == "mnre" and not result.warnings
        sizes[split] = len(result.samples)
    assert sizes == {"train": 48, "dev": 16, "test": 16}


def test_labels_images_and_captions(synthetic_dataset: SyntheticDataset) -> None:
    samples = [s for p in synthetic_dataset.splits.values() for s in load_samples(p)]
    relations = Counter(s.relation for s in samples)
    assert relations["None"] > 0 and len(relations) >= 6
    posts = Counter((s.tokens, s.img_id) for s in samples)
    assert max(posts.values()) >= 2  # several samples share one post

    captions = [
        json.loads(p.read_text()) for p in (synthetic_dataset.captions_a, synthetic_dataset.captions_b)
    ]
    for img_id in {s.img_id for s in samples}:
        assert img_id is not None
        with Image.open(synthetic_dataset.image_dir / img_id) as image:
            image.load()
            assert image.size == (32, 32) and image.mode == "RGB"
        assert captions[0][img_id] and captions[1][img_id] and captions[0][img_id] != captions[1][img_id]


def test_relation_shows_in_the_image_captions(synthetic_dataset: SyntheticDataset) -> None:
    captions = json.loads(synthetic_dataset.captions_a.read_text())
    by_relation: dict[str, set[str]] = {}
    for s in load_samples(synthetic_dataset.train):
        if s.relation != "None" and s.img_id is not None:
            by_relation.setdefault(s.relation or "", set()).add(captions[s.img_id].split(",")[0])
    # the main shape/colour is a function of the relation
    assert all(len(v) == 1 for v in by_relation.values())
    assert len({next(iter(v)) for v in by_relation.values()}) == len(by_relation)


def test_unseen_and_untokenizable_subsets_are_not_empty(synthetic_dataset: SyntheticDataset) -> None:
    train = load_samples(synthetic_dataset.train)
    for split in ("dev", "test"):
        counts = subset_counts(load_samples(synthetic_dataset.splits[split]), train)
        assert counts["n"] == 16
        assert 0 < counts["unseen"] < 16
        assert 0 < counts["untokenizable"] < 16


def test_deterministic_for_a_seed(tmp_path: Path) -> None:
    def files(ds: SyntheticDataset) -> dict[str, bytes]:
        return {
            p.relative_to(ds.root).as_posix(): p.read_bytes()
            for p in sorted(ds.root.rglob("*"))
            if p.is_file()
        }

    first = files(make_synthetic_dataset(tmp_path / "a", 20, 5, 5, seed=3, image_size=24))
    again = files(make_synthetic_dataset(tmp_path / "b", 20, 5, 5, seed=3, image_size=24))
    other = files(make_synthetic_dataset(tmp_path / "c", 20, 5, 5, seed=4, image_size=24))
    assert first == again
    assert first["train.txt"] != other["train.txt"]
    assert any(name.startswith("images/") for name in first)


def _marked(sample: Sample) -> str:
    words = []
    for i, token in enumerate(sample.tokens):
        words += ["<h>"] * (i == sample.head.start) + ["<t>"] * (i == sample.tail.start) + [token]
        words += ["</h>"] * (i == sample.head.end - 1) + ["</t>"] * (i == sample.tail.end - 1)
    return " ".join(words)


def test_relation_is_learnable_from_the_text(synthetic_dataset: SyntheticDataset) -> None:
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression

    train = load_samples(synthetic_dataset.train)
    dev = load_samples(synthetic_dataset.dev)
    vectorizer = CountVectorizer(ngram_range=(1, 2), token_pattern=r"\S+")
    small = train[:32]
    features = vectorizer.fit_transform([_marked(s) for s in small])
    model = LogisticRegression(C=100, max_iter=2000).fit(features, [s.relation for s in small])
    assert model.score(features, [s.relation for s in small]) == 1.0  # a tiny model overfits 32 samples

    features = vectorizer.fit_transform([_marked(s) for s in train])
    model.fit(features, [s.relation for s in train])
    dev_accuracy = model.score(vectorizer.transform([_marked(s) for s in dev]), [s.relation for s in dev])
    assert dev_accuracy > 0.5  # and generalises past chance from 48


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=">= 0"):
        make_synthetic_dataset(tmp_path, -1, 1, 1)
    with pytest.raises(ValueError, match="image_size"):
        make_synthetic_dataset(tmp_path, 1, 1, 1, image_size=4)
