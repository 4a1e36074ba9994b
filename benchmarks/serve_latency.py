"""Latency and throughput of ``pgmre serve`` on 127.0.0.1 at 1, 4 and 16 concurrent clients.

    nice .venv/bin/python benchmarks/serve_latency.py                 # trains a small run first
    nice .venv/bin/python benchmarks/serve_latency.py --run runs/NAME # or serve an existing run

The service runs in its own process (``pgmre serve``), the clients in this one (httpx, one thread per
client). Posts come from a synthetic test split; two scenarios: ``repeated`` (the same 16 posts again:
explanations and visual features come from the caches) and ``unique`` (every request has a new caption
or image: the frozen visual encoder runs and a feature-cache shard is written per request).
Results go to ``benchmarks/results/serve_latency.json``; ``docs/serving.md`` summarises them.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import torch
from PIL import Image

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset, make_synthetic_dataset
from pgmre.data.types import Sample

RESULTS = Path(__file__).resolve().parent / "results" / "serve_latency.json"
CONCURRENCY = (1, 4, 16)


def train_small_run(root: Path, data: SyntheticDataset) -> Path:
    """The bundled MiniLM text and caption encoders (real sizes), a few steps: latency, not accuracy."""
    from pgmre.config import config_from_dict
    from pgmre.train.run import run_training

    names = {
        n
        for split in (data.train, data.dev, data.test)
        for s in load_samples(split)
        for n in (s.head.name, s.tail.name)
    }
    summaries = root / "summaries.json"
    summaries.write_text(json.dumps({n: {"extract": f"{n} appears in synthetic posts."} for n in names}))
    config = config_from_dict(
        {
            "data": {"train": str(data.train), "dev": str(data.dev)},
            "explain": {
                "backend": "wikipedia",
                "wikipedia_summaries": str(summaries),
                "cache": str(root / "expl.sqlite"),
            },
            "visual": {
                "source": "caption",
                "num_objects": 1,
                "captions": {"image": str(data.captions_a), "objects": [str(data.captions_b)]},
                "feature_cache": str(root / "features"),
            },
            "train": {"epochs": 1, "max_steps": 4, "batch_size": 8, "output_dir": str(root)},
        }
    )
    return run_training(config, root / "run").run_dir


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(run: Path, port: int, max_batch: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    command = [sys.executable, "-m", "pgmre.cli", "serve", "--run", str(run), "--port", str(port)]
    command += ["--max-batch", str(max_batch)]
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(
                f"pgmre serve exited: {server.stderr.read().decode()[-2000:] if server.stderr else ''}"
            )
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            time.sleep(0.5)
    server.kill()
    raise RuntimeError("pgmre serve did not start within 300 s")


def png_bytes(seed: int) -> bytes:
    img = Image.new("RGB", (96, 96), (seed * 37 % 256, seed * 91 % 256, seed * 13 % 256))
    buffer = io.BytesIO()
    img.save(buffer, format="PNG")
    return buffer.getvalue()


def request_for(sample: Sample, visual: str, data: SyntheticDataset, unique: int | None) -> dict[str, Any]:
    """httpx keyword arguments for one post; ``unique`` makes the visual input new."""
    fields = {"text": sample.text, "head": sample.head.name, "tail": sample.tail.name, "top_k": "3"}
    if visual == "image":
        image = (
            png_bytes(unique) if unique is not None else (data.image_dir / (sample.img_id or "")).read_bytes()
        )
        return {"data": fields, "files": {"image": ("post", image, "application/octet-stream")}}
    if visual == "caption":
        fields["caption"] = (
            f"a photo, variant {unique}" if unique is not None else f"a photo of {sample.head.name}"
        )
    return {"data": fields}


def measure(url: str, requests: list[dict[str, Any]], concurrency: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0

    def client(part: list[dict[str, Any]]) -> tuple[list[float], int]:
        times, failed = [], 0
        with httpx.Client(base_url=url, timeout=120) as http:
            for kwargs in part:
                started = time.perf_counter()
                response = http.post("/predict", **kwargs)
                times.append(time.perf_counter() - started)
                failed += response.status_code != 200
        return times, failed

    parts = [requests[i::concurrency] for i in range(concurrency)]
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        for times, failed in pool.map(client, parts):
            latencies.extend(times)
            errors += failed
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {
        "concurrency": concurrency,
        "requests": len(latencies),
        "errors": errors,
        "p50_ms": round(1000 * statistics.median(ordered), 1),
        "p95_ms": round(1000 * ordered[max(0, int(0.95 * len(ordered)) - 1)], 1),
        "mean_ms": round(1000 * statistics.fmean(ordered), 1),
        "throughput_rps": round(len(latencies) / wall, 2),
        "wall_s": round(wall, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--run", type=Path, help="a trained run (default: train a small one on synthetic data)"
    )
    parser.add_argument(
        "--requests", type=int, default=64, help="requests per concurrency level and scenario"
    )
    parser.add_argument(
        "--max-batch", default="1,16", help="server batching settings to compare (1: no batching)"
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pgmre-serve-bench-") as tmp:
        root = Path(tmp)
        data = make_synthetic_dataset(root / "data", n_train=48, n_dev=16, n_test=16, seed=0, image_size=96)
        trained_here = args.run is None
        started = time.perf_counter()
        run = args.run or train_small_run(root, data)
        train_s = time.perf_counter() - started
        results = []
        counter = 0
        for max_batch in (int(x) for x in args.max_batch.split(",")):
            port = free_port()
            server = start_server(run, port, max_batch)
            url = f"http://127.0.0.1:{port}"
            try:
                health = httpx.get(f"{url}/health").json()
                visual = health["inputs"]["visual"]
                samples = load_samples(data.test)
                repeated = [
                    request_for(samples[i % len(samples)], visual, data, None) for i in range(args.requests)
                ]
                for kwargs in repeated[: len(samples)]:  # warm-up: fills the explanation and feature caches
                    httpx.post(f"{url}/predict", timeout=300, **kwargs).raise_for_status()
                for concurrency in CONCURRENCY:
                    setting = {"max_batch": max_batch}
                    results.append({"scenario": "repeated", **setting, **measure(url, repeated, concurrency)})
                    unique = []
                    for i in range(args.requests):
                        counter += 1
                        unique.append(request_for(samples[i % len(samples)], visual, data, counter))
                    results.append({"scenario": "unique", **setting, **measure(url, unique, concurrency)})
                    print(json.dumps(results[-2:]), flush=True)
            finally:
                server.terminate()
                server.wait(timeout=30)

    report = {
        "benchmark": "serve_latency",
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            # Other work on the machine shares its cores: the 1-minute load before and after.
            "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "torch_threads": torch.get_num_threads(),
        },
        "run": "small synthetic run (bundled MiniLM, caption source, explanations)"
        if trained_here
        else str(run),
        "model": health["model"],
        "inputs": health["inputs"],
        "train_s": round(train_s, 1) if trained_here else None,
        "requests_per_level": args.requests,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
