"""Frozen-feature throughput on this machine: images/s (EfficientNet-Lite0), captions/s (MiniLM), and a
pass over the MNRE train captions with a cold and a warm feature cache.

    nice .venv/bin/python benchmarks/features_speed.py            # writes benchmarks/results/features_speed.json

The cold/warm pass uses the real caption layout (image slot: CogVLM, object slots: BLIP, LLaVA-NeXT,
MiniCPM-V) over the samples of ``mnre_train.txt``; only counts and timings are written.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from PIL import Image, ImageDraw

from common import MNRE_DIR, ROOT, TRAIN
from pgmre.config import CaptionConfig, VisualConfig
from pgmre.data.mnre import load_samples
from pgmre.encoders.frozen_text import FrozenTextEncoder
from pgmre.encoders.images import EfficientNetLiteEncoder, decode_image
from pgmre.encoders.visual import CaptionFeatures, build_visual_provider

OBJECT_SOURCES = ("blip", "llavanext", "minicpm")

MNRE = ROOT / MNRE_DIR


def jpeg_images(count: int, seed: int = 0) -> list[bytes]:
    """Photo-sized JPEGs with random shapes (decode + resize cost is part of the measurement)."""
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        img = Image.new(
            "RGB", (rng.randint(320, 640), rng.randint(240, 480)), tuple(rng.randrange(256) for _ in range(3))
        )
        pen = ImageDraw.Draw(img)
        for _ in range(8):
            x, y = rng.randrange(img.width), rng.randrange(img.height)
            pen.ellipse(
                (x, y, x + rng.randint(20, 200), y + rng.randint(20, 200)),
                fill=tuple(rng.randrange(256) for _ in range(3)),
            )
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=90)
        out.append(buffer.getvalue())
    return out


def bench_images(count: int, batch_size: int) -> dict[str, Any]:
    encoder = EfficientNetLiteEncoder("cpu")
    data = jpeg_images(count)
    encoder.encode([decode_image(data[0], "warm-up")])
    start = time.perf_counter()
    for i in range(0, count, batch_size):
        encoder.encode([decode_image(d, str(j)) for j, d in enumerate(data[i : i + batch_size])])
    seconds = time.perf_counter() - start
    return {
        "images": count,
        "batch_size": batch_size,
        "seconds": round(seconds, 2),
        "images_per_s": round(count / seconds, 1),
    }


def bench_captions(captions: list[str], batch_size: int) -> dict[str, Any]:
    encoder = FrozenTextEncoder("bundled:minilm", max_length=128, device="cpu", batch_size=batch_size)
    encoder.run(captions[:batch_size])  # load the model, warm up
    start = time.perf_counter()
    encoder.run(captions)
    seconds = time.perf_counter() - start
    return {
        "captions": len(captions),
        "batch_size": batch_size,
        "mean_words": round(sum(len(c.split()) for c in captions) / len(captions), 1),
        "seconds": round(seconds, 2),
        "captions_per_s": round(len(captions) / seconds, 1),
    }


def bench_train_pass(batch_size: int) -> dict[str, Any]:
    samples = load_samples(ROOT / TRAIN)
    captions = MNRE / "captions"
    cfg = VisualConfig(
        source="caption",
        captions=CaptionConfig(
            image=str(captions / "cogvlm_{split}.json"),
            objects=[str(captions / f"{name}_{{split}}.json") for name in OBJECT_SOURCES],
        ),
        device="cpu",
        batch_size=batch_size,
        missing="blank",  # BLIP has 30 empty train captions: reported below, masked
    )
    result: dict[str, Any] = {"samples": len(samples), "sources": ["cogvlm", *OBJECT_SOURCES]}
    with tempfile.TemporaryDirectory(prefix="pgmre-bench-cache-") as cache:
        cfg.feature_cache = cache
        for phase in ("cold", "warm"):
            start = time.perf_counter()
            provider = build_visual_provider(cfg, split="train", progress=True)
            assert isinstance(provider, CaptionFeatures)
            batch = provider.features(samples)
            seconds = time.perf_counter() - start
            result[phase] = {
                "seconds": round(seconds, 2),
                "cache_hits": provider.cache_stats["hits"],
                "cache_misses": provider.cache_stats["misses"],
                "captions_encoded": provider.encoder.encoder.texts_encoded,
            }
            result["filled_slots"] = batch.mask.sum(0).tolist()
            result["missing"] = batch.report.counts
        result["cache_mib"] = round(
            sum(p.stat().st_size for p in Path(cache).rglob("*") if p.is_file()) / 2**20, 1
        )
    result["speedup"] = round(result["cold"]["seconds"] / result["warm"]["seconds"], 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument(
        "--captions", type=int, default=1024, help="CogVLM train captions timed for captions/s"
    )
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--skip-train-pass", action="store_true", help="skip the full cold/warm pass")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "features_speed.json")
    args = parser.parse_args()

    cogvlm = json.loads((MNRE / "captions" / "cogvlm_train.json").read_text())
    sample = random.Random(0).sample(sorted(cogvlm.values()), args.captions)
    report: dict[str, Any] = {
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "efficientnet_lite0": bench_images(args.images, args.batch_size),
        "minilm_captions": bench_captions(sample, args.batch_size),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")  # kept if the long pass is interrupted
    print(json.dumps(report, indent=2))
    if not args.skip_train_pass:
        report["mnre_train_captions_pass"] = bench_train_pass(args.batch_size)
    report["machine"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
