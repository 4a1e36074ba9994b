"""Dynamic batching: concurrent requests share model batches, answers stay per request, failures stay alone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.explain import ExplanationsMissing
from pgmre.serve.batching import MicroBatcher
from pgmre.serve.predictor import Predictor


def test_batched_answers_equal_single_ones(
    trained_caption_run: Path, synthetic_dataset: SyntheticDataset, request: pytest.FixtureRequest
) -> None:
    predictor = Predictor.from_pretrained(trained_caption_run)
    posts = [
        {"text": s.text, "head": s.head.name, "tail": s.tail.name, "caption": f"photo {i}"}
        for i, s in enumerate(load_samples(synthetic_dataset.test)[:6])
    ]
    posts.append({"text": "Jonas Berg joined Acme Widgets", "head": "Jonas Berg", "tail": "Acme Widgets"})
    prepared = [predictor.prepare(post) for post in posts]
    alone = [predictor.predict_prepared([p], top_k=1 + i % 3)[0] for i, p in enumerate(prepared[:6])]

    asked = request.getfixturevalue("explanation_lookups")  # look-ups from here on, not the ones above
    batcher = MicroBatcher(predictor, max_batch=4, max_wait_s=0.5)
    try:
        futures = [batcher.submit(p, top_k=1 + i % 3) for i, p in enumerate(prepared)]
        results = [f.result(timeout=120) for f in futures[:6]]
        with pytest.raises(ExplanationsMissing):  # no backend explains "Acme Widgets": only it fails
            futures[6].result(timeout=120)
    finally:
        batcher.close()
    for got, want in zip(results, alone, strict=True):
        assert [r for r, _ in got.top_k] == [r for r, _ in want.top_k]  # each request's own top_k
        assert np.allclose([p for _, p in got.top_k], [p for _, p in want.top_k], atol=1e-5)
        assert got.explanations == want.explanations
    assert batcher.served == 6 and batcher.batches < 6
    # each request went to the backends once, in its batch (e.g. [(4, True), (3, True)]); the requests of
    # the batch that failed were retried alone from the cache only (then [(1, False)] x 3)
    retries = [n for n, generate in asked if not generate]
    assert sum(n for n, generate in asked if generate) == 7
    assert retries and retries == [1] * len(retries)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(prepared[0])
