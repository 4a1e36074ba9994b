"""``pgmre demo``: the whole pipeline on synthetic posts, offline, on the bundled defaults.

Synthetic MNRE-format posts with real PIL images -> entity explanations (offline Wikipedia summaries,
then the bundled SmolLM2) -> image + saliency object crops encoded by the bundled EfficientNet-Lite0 ->
PG-MRE on the bundled MiniLM -> evaluation report and plots -> one prediction for a new post.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgmre.config import Config, config_from_dict, dump_config
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import make_synthetic_dataset


@dataclass
class DemoResult:
    run_dir: Path
    eval_dir: Path
    report: dict[str, Any]
    prediction: dict[str, Any]
    seconds: float


def demo_config(root: Path, data: Any, epochs: int, seed: int) -> Config:
    cache = root / "cache"
    return config_from_dict(
        {
            "seed": seed,
            "data": {"train": str(data.train), "dev": str(data.dev), "test": str(data.test)},
            "explain": {
                "backend": "wikipedia,local",
                "cache": str(cache / "explanations.sqlite"),
                "batch_size": 32,
            },
            "text": {"encoder": "bundled:minilm", "max_length": 64, "explanation_encoder": "frozen"},
            "visual": {
                "source": "image",
                "encoder": "bundled:efficientnet-lite0",
                "image_dir": str(data.image_dir),
                "num_objects": 3,
                "crops": {"auto": "saliency"},
                "missing": "error",
                "feature_cache": str(cache / "features"),
            },
            # A 48-step run: prototypes unused for 10 steps are re-seeded (the MNRE default of 200 would never fire).
            "model": {"num_attr_prototypes": 8, "num_rel_prototypes": 8, "dead_prototype_steps": 10},
            # Tiny data: a larger learning rate for the new modules than the paper's 2e-5.
            "train": {
                "epochs": epochs,
                "batch_size": 16,
                "lr": 1e-4,
                "head_lr": 1e-3,
                "output_dir": str(root),
            },
        }
    )


def run_demo(out: str | Path = "runs/demo", epochs: int = 6, n_train: int = 120, seed: int = 0) -> DemoResult:
    from pgmre.evaluate.report import evaluate_run
    from pgmre.serve.predictor import Predictor
    from pgmre.train.run import run_training

    started = time.perf_counter()
    root = Path(out)
    data = make_synthetic_dataset(
        root / "data",
        n_train=n_train,
        n_dev=max(16, n_train // 4),
        n_test=max(16, n_train // 4),
        seed=seed,
        image_size=96,
    )
    config = demo_config(root, data, epochs, seed)
    (root / "demo-config.yaml").write_text(dump_config(config))
    run_dir = root / "run"
    shutil.rmtree(run_dir, ignore_errors=True)  # the demo is meant to be re-run: start a fresh run each time
    summary = run_training(config, run_dir)
    evaluation = evaluate_run(run_dir, data.test, train_path=data.train)

    # One held-out test post, given to the Python API as a user would: tokens, entity spans, image file.
    predictor = Predictor.from_pretrained(run_dir)
    post = next(s for s in load_samples(data.test) if s.relation != "None")
    prediction = predictor.predict(
        list(post.tokens),
        head=(post.head.start, post.head.end),
        tail=(post.tail.start, post.tail.end),
        image=data.image_dir / str(post.img_id),
    ).to_dict()
    prediction["gold"] = post.relation
    (root / "prediction.json").write_text(json.dumps(prediction, indent=1))
    return DemoResult(
        summary.run_dir, evaluation.out_dir, evaluation.report, prediction, time.perf_counter() - started
    )
