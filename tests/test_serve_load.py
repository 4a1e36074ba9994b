"""Concurrent clients against a live server on 127.0.0.1: no errors, and the same answers as alone."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.serve.app import create_app
from pgmre.serve.background import BackgroundServer
from pgmre.serve.predictor import Predictor

CLIENTS = 16
REQUESTS_PER_CLIENT = 4


def test_concurrent_clients(trained_caption_run: Path, synthetic_dataset: SyntheticDataset) -> None:
    samples = load_samples(synthetic_dataset.test)[:8]
    bodies = [
        {"text": s.text, "head": s.head.name, "tail": s.tail.name, "caption": f"post {i}", "top_k": 3}
        for i, s in enumerate(samples)
    ]
    with BackgroundServer(create_app(Predictor.from_pretrained(trained_caption_run))) as url:
        with httpx.Client(base_url=url, timeout=60) as client:
            alone = [client.post("/predict", json=body).json() for body in bodies]
            before = client.get("/health").json()["batching"]
            served_before, batches_before = before["served"], before["batches"]

        def one_client(index: int) -> list[tuple[int, int, dict]]:
            results = []
            with httpx.Client(base_url=url, timeout=60) as client:
                for k in range(REQUESTS_PER_CLIENT):
                    which = (index + k) % len(bodies)
                    response = client.post("/predict", json=bodies[which])
                    results.append((which, response.status_code, response.json()))
            return results

        started = time.monotonic()
        with ThreadPoolExecutor(CLIENTS) as pool:
            results = [r for batch in pool.map(one_client, range(CLIENTS)) for r in batch]
        elapsed = time.monotonic() - started
        health = httpx.get(f"{url}/health").json()

    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    errors = [(which, status, body) for which, status, body in results if status != 200]
    assert errors == []
    for which, _, body in results:  # batched with others or not, every answer is the lone answer
        assert body["relation"] == alone[which]["relation"]
        assert body["explanations"] == alone[which]["explanations"]
        assert [t["relation"] for t in body["top_k"]] == [t["relation"] for t in alone[which]["top_k"]]
        assert np.allclose(
            [t["probability"] for t in body["top_k"]],
            [t["probability"] for t in alone[which]["top_k"]],
            atol=1e-5,
        )
    assert elapsed < 120, f"{len(results)} requests took {elapsed:.1f} s"
    assert health["batching"]["served"] - served_before == len(results)
    assert health["batching"]["batches"] - batches_before < len(results)  # some requests shared a batch
