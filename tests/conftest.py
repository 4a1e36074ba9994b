"""Shared fixtures. Everything here is cheap and built from scratch: tests never read ../shared."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset, make_synthetic_dataset
from pgmre.labels import RelationVocab

from tiny import make_tiny_bert, make_tiny_vit


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


# ---------------------------------------------------------------- tiny trained runs (prediction, serving)


def _entity_summaries(ds: SyntheticDataset, path: Path) -> Path:
    """A Wikipedia-summaries file for every synthetic entity: the real wikipedia backend, offline."""
    names = {
        name
        for split in (ds.train, ds.dev, ds.test)
        for sample in load_samples(split)
        for name in (sample.head.name, sample.tail.name)
    }
    path.write_text(json.dumps({n: {"extract": f"{n} is a name seen in synthetic posts."} for n in names}))
    return path


@pytest.fixture(scope="session")
def tiny_encoders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A tiny random BERT (text) and ViT (images), shared by the session."""
    root = tmp_path_factory.mktemp("tiny_encoders")
    return {"bert": make_tiny_bert(root / "bert"), "vit": make_tiny_vit(root / "vit")}


def _train_tiny(
    ds: SyntheticDataset, root: Path, bert: Path, visual: dict, model: dict, explain: dict
) -> Path:
    import torch

    from pgmre.config import config_from_dict
    from pgmre.train.run import run_training

    raw = {
        "seed": 7,
        "data": {"train": str(ds.train), "dev": str(ds.dev)},
        "explain": explain,
        "text": {"encoder": str(bert), "max_length": 64, "explanation_max_length": 16},
        "visual": {"feature_cache": str(root / "features"), **visual},
        "model": {"num_heads": 2, "dropout": 0.0, "num_attr_prototypes": 4, "num_rel_prototypes": 4, **model},
        "train": {"epochs": 3, "batch_size": 8, "lr": 5e-4, "output_dir": str(root / "runs")},
    }
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny models: one thread is as fast, and immune to busy shared CPUs
    try:
        return run_training(config_from_dict(raw), root / "run").run_dir
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def trained_caption_run(
    synthetic_dataset: SyntheticDataset,
    tiny_encoders: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """The full model (explanations, APM, RPM) on captions; explanations from the wikipedia backend."""
    root = tmp_path_factory.mktemp("caption_run")
    ds = synthetic_dataset
    return _train_tiny(
        ds,
        root,
        tiny_encoders["bert"],
        visual={
            "source": "caption",
            "num_objects": 1,
            "captions": {"image": str(ds.captions_a), "objects": [str(ds.captions_b)]},
        },
        model={"use_explanations": True, "use_apm": True, "use_rpm": True},
        explain={
            "backend": "wikipedia",
            "wikipedia_summaries": str(_entity_summaries(ds, root / "summaries.json")),
            "cache": str(root / "explanations.sqlite"),
        },
    )


@pytest.fixture(scope="session")
def trained_image_run(
    synthetic_dataset: SyntheticDataset,
    tiny_encoders: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """Image source through a tiny ViT with automatic grid crops; no explanations."""
    root = tmp_path_factory.mktemp("image_run")
    return _train_tiny(
        synthetic_dataset,
        root,
        tiny_encoders["bert"],
        visual={
            "source": "image",
            "encoder": str(tiny_encoders["vit"]),
            "image_dir": str(synthetic_dataset.image_dir),
            "num_objects": 2,
            "crops": {"auto": "grid"},
        },
        model={"use_explanations": False, "use_apm": False, "use_rpm": True},
        explain={"cache": str(root / "explanations.sqlite")},
    )


@pytest.fixture
def explanation_lookups(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool]]:
    """(samples, generate) of every ``explanations_for`` call from here on (the real one still runs)."""
    import pgmre.explain

    asked: list[tuple[int, bool]] = []
    look_up = pgmre.explain.explanations_for

    def spy(samples: list, *args: object, generate: bool = True, **kwargs: object) -> object:
        asked.append((len(samples), generate))
        return look_up(samples, *args, generate=generate, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(pgmre.explain, "explanations_for", spy)
    return asked
