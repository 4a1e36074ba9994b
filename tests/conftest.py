"""Shared fixtures. Everything here is cheap and built from scratch: tests never read ../shared."""

from __future__ import annotations

import pytest

from pgmre.data.synthetic import SyntheticDataset, make_synthetic_dataset
from pgmre.labels import RelationVocab


@pytest.fixture(scope="session")
def synthetic_dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """A small synthetic MNRE-format dataset (48/16/16 samples, 32-px images, captions), built once.

    Treat it as read-only: write derived files under your own ``tmp_path``.
    """
    root = tmp_path_factory.mktemp("synthetic_mnre")
    return make_synthetic_dataset(root, n_train=48, n_dev=16, n_test=16, seed=0, image_size=32)


@pytest.fixture(scope="session")
def mnre_vocab() -> RelationVocab:
    """The bundled 23-relation MNRE vocabulary (``None`` = 0)."""
    return RelationVocab.mnre()
