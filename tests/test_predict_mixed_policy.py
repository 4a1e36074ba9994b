"""One ``predict_prepared`` call mixing new posts and MNRE records (two missing-input policies).

The explanations of every sample are fetched in one round before the call splits by policy, and each
policy group gets them handed over instead of looking them up again. The LLM is a real HTTP server on
127.0.0.1 (``FakeOpenAI``); the backend client, the SQLite cache and the model are the real ones.
"""

from __future__ import annotations

import re
import shutil
from collections import Counter
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.explain import ExplanationsMissing
from pgmre.serve.predictor import Predictor, PreparedInput
from test_explain_openai import FakeOpenAI, expected_text

_PROMPT = re.compile(r'^Post: "(.*)"\nWho or what is (.+)\?$', re.DOTALL)  # template v1
POSTS = [
    {"text": "Jonas Berg joined Acme Widgets in Oslo", "head": "Jonas Berg", "tail": "Acme Widgets"},
    {"text": "Mara Lind met Jonas Berg at Summit Bank", "head": "Mara Lind", "tail": "Summit Bank"},
]


class RefusingOpenAI(FakeOpenAI):
    """Every chat completion fails with HTTP 500 (the fake's ``dead`` behaviour, for any entity)."""

    def respond(self, handler: BaseHTTPRequestHandler, entity: str, attempt: int) -> None:
        super().respond(handler, "dead", attempt)


def openai_run(trained_run: Path, root: Path, url: str) -> Path:
    """A copy of ``trained_run`` whose explanations come from the openai backend at ``url``, fresh cache."""
    run = shutil.copytree(trained_run, root / "run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["explain"] = {
        **config["explain"],
        "backend": "openai",
        "cache": str(root / "explanations.sqlite"),
        "openai": {"base_url": url, "model": "fake-1", "concurrency": 4, "timeout_s": 5.0, "max_retries": 0},
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


def prompts_at(server: FakeOpenAI) -> Counter[tuple[str, str]]:
    """(post, entity) of every chat completion the server was asked for, with how often."""
    asked: Counter[tuple[str, str]] = Counter()
    for body in server.bodies:
        match = _PROMPT.match(body["messages"][-1]["content"])
        assert match is not None, body
        asked[match.group(1), match.group(2)] += 1
    return asked


def mixed_inputs(
    predictor: Predictor, dataset: SyntheticDataset
) -> tuple[list[PreparedInput], list[dict[str, Any]]]:
    """Records (with an img_id, as ``pgmre predict`` reads MNRE lines) and new posts, interleaved."""
    records = load_samples(dataset.test)[:3]
    posts = [predictor.prepare(post) for post in POSTS]
    prepared = [
        PreparedInput(records[0]),
        posts[0],
        PreparedInput(records[1]),
        posts[1],
        PreparedInput(records[2]),
    ]
    extras = [{"img_id": p.sample.img_id} if p.sample.img_id else {"post": i} for i, p in enumerate(prepared)]
    return prepared, extras


def distinct_requests(prepared: Sequence[PreparedInput]) -> set[tuple[str, str]]:
    return {(p.sample.text, name) for p in prepared for name in (p.sample.head.name, p.sample.tail.name)}


@pytest.fixture
def fake_llm() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


def test_mixed_posts_and_records_fetch_explanations_once_and_predict_as_apart(
    trained_caption_run: Path,
    synthetic_dataset: SyntheticDataset,
    tmp_path: Path,
    fake_llm: FakeOpenAI,
    explanation_lookups: list[tuple[int, bool]],
) -> None:
    predictor = Predictor.from_pretrained(openai_run(trained_caption_run, tmp_path, fake_llm.url))
    prepared, extras = mixed_inputs(predictor, synthetic_dataset)
    assert len({p.sample.img_id is None for p in prepared}) == 2  # both policies: the split path

    mixed = predictor.predict_prepared(prepared, top_k=3, extras=extras)

    # one look-up for all five samples, handed to both groups (not a look-up per group after it)
    assert explanation_lookups == [(len(prepared), True)]
    # and the LLM was asked once per distinct (post, entity), every one of them
    wanted = distinct_requests(prepared)
    assert prompts_at(fake_llm) == Counter(dict.fromkeys(wanted, 1))

    # each kind predicted apart (the explanations now come from the cache: the LLM is not asked again)
    records = [i for i, p in enumerate(prepared) if p.sample.img_id is not None]
    posts = [i for i, p in enumerate(prepared) if p.sample.img_id is None]
    apart: dict[int, Any] = {}
    for index in (records, posts):
        group = predictor.predict_prepared([prepared[i] for i in index], top_k=3)
        apart.update(zip(index, group, strict=True))
    assert len(fake_llm.bodies) == len(wanted)

    assert len(mixed) == len(prepared)
    for i, (got, p) in enumerate(zip(mixed, prepared, strict=True)):
        want = apart[i]
        assert got.tokens == p.sample.tokens and got.extra == extras[i]  # input order
        assert got.relation == want.relation
        assert got.probability == pytest.approx(want.probability, abs=1e-5)
        assert [r for r, _ in got.top_k] == [r for r, _ in want.top_k]
        assert np.allclose([q for _, q in got.top_k], [q for _, q in want.top_k], atol=1e-5)
        assert got.explanations == want.explanations
        assert got.explanations == (expected_text(p.sample.head.name), expected_text(p.sample.tail.name))
        assert (got.visual_slots > 0) == (p.sample.img_id is not None)  # records with their caption


def test_a_failing_llm_fails_the_mixed_call_after_one_round_for_every_sample(
    trained_caption_run: Path,
    synthetic_dataset: SyntheticDataset,
    tmp_path: Path,
    explanation_lookups: list[tuple[int, bool]],
) -> None:
    with RefusingOpenAI() as server:
        predictor = Predictor.from_pretrained(openai_run(trained_caption_run, tmp_path, server.url))
        prepared, extras = mixed_inputs(predictor, synthetic_dataset)
        wanted = distinct_requests(prepared)
        n = len(wanted)
        with pytest.raises(
            ExplanationsMissing, match=rf"{n} of {n} unique explanations .*'openai'.*{n} failed"
        ):
            predictor.predict_prepared(prepared, top_k=3, extras=extras)
        # both kinds were asked in the one round, whichever policy group would have come first
        assert explanation_lookups == [(len(prepared), True)]
        assert prompts_at(server) == Counter(dict.fromkeys(wanted, 1))
