"""Concurrent clients against a live server on 127.0.0.1: no errors, and the same answers as alone."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

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

    assert len(results) == CLIENTS * REQUESTS_PER_CLIENT
    errors = [(which, status, body) for which, status, body in results if status != 200]
    assert errors == []
    for which, _, body in results:  # one shared model, serialised: every answer is the lone answer
        assert body == alone[which]
    assert elapsed < 120, f"{len(results)} requests took {elapsed:.1f} s"
