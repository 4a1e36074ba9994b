"""Predict relations for new posts with a trained run: ``Predictor`` and the one-call ``infer``.

Everything between an input and the model goes through :class:`~pgmre.pipeline.MREPipeline` (the path
training and evaluation use), and records are built by
:func:`~pgmre.evaluate.report.prediction_records`, so a prediction here equals ``pgmre evaluate``'s on
the same sample. A new post without an image or caption gets blank visual slots; a record that names
an ``img_id`` (an MNRE line in ``pgmre predict``) follows the run's ``visual.missing`` exactly as
``pgmre evaluate`` does. ``visual_slots`` says how many visual inputs the model saw. The one exception
is a published-protocol model (``text.phrases``): every input here gets an empty phrase, since a new
post has no grounding phrase, so its predictions differ from ``pgmre evaluate``'s (docs/leakage.md).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from pgmre.config import protocol_statement
from pgmre.data.parsing import shown
from pgmre.data.types import Entity, Sample
from pgmre.encoders.frozen_text import pick_device
from pgmre.encoders.images import ImageInput
from pgmre.evaluate.inference import predict_dataset
from pgmre.evaluate.report import prediction_records
from pgmre.pipeline import MREPipeline
from pgmre.precision import resolve_precision
from pgmre.serve.inputs import (
    EntitySpec,
    InputError,
    caption_text,
    check_entity_pair,
    explanation_pair,
    read_image,
    resolve_entity,
    tokenize,
)

INPUT_KEYS = frozenset({"text", "head", "tail", "image", "caption", "explanations"})


@dataclass(frozen=True)
class PostInput:
    """One post to predict on (see :mod:`pgmre.serve.inputs` for the accepted entity forms)."""

    text: str | Sequence[str]
    head: EntitySpec
    tail: EntitySpec
    image: ImageInput | None = None
    caption: str | None = None
    explanations: tuple[str, str] | Mapping[str, str] | None = None

    @classmethod
    def from_mapping(cls, record: Mapping[str, Any]) -> PostInput:
        """From a JSON-like dict; unknown keys and missing ``text``/``head``/``tail`` are errors."""
        unknown = sorted(shown(k) for k in record if k not in INPUT_KEYS)
        if unknown:
            raise InputError(f"unknown fields {', '.join(unknown)}; known: {', '.join(sorted(INPUT_KEYS))}")
        missing = [k for k in ("text", "head", "tail") if record.get(k) is None]
        if missing:
            raise InputError(f"missing field(s): {', '.join(missing)}")
        return cls(**{k: v for k, v in record.items() if k in INPUT_KEYS})


@dataclass(frozen=True)
class PreparedInput:
    """A validated input: the sample and its per-sample visual/explanation overrides."""

    sample: Sample
    image: bytes | None = None
    caption: str | None = None
    explanations: tuple[str, str] | None = None


@dataclass(frozen=True)
class Prediction:
    """The predicted relation, the top-k, and why: the explanations used and the assigned prototypes."""

    relation: str
    probability: float
    top_k: list[tuple[str, float]]
    explanations: tuple[str, str] | None
    attribute_prototype: int | None
    relation_prototype: int | None
    tokens: tuple[str, ...] = ()
    head: Entity | None = None
    tail: Entity | None = None
    visual_slots: int = 0  # visual inputs the model saw (0: no image/caption given or found)
    extra: dict[str, Any] = field(default_factory=dict)  # e.g. img_id and gold of an MNRE record

    def to_dict(self) -> dict[str, Any]:
        """JSON-able; ``relation`` is the key ``pgmre score --pred`` reads."""
        return {
            "relation": self.relation,
            "probability": self.probability,
            "top_k": [{"relation": r, "probability": p} for r, p in self.top_k],
            "explanations": (
                {"head": self.explanations[0], "tail": self.explanations[1]} if self.explanations else None
            ),
            "attribute_prototype": self.attribute_prototype,
            "relation_prototype": self.relation_prototype,
            "tokens": list(self.tokens),
            "head": self.head.to_dict() if self.head else None,
            "tail": self.tail.to_dict() if self.tail else None,
            "visual_slots": self.visual_slots,
            **self.extra,
        }


class Predictor:
    """A trained run ready to predict. Thread-safe: one model, predictions serialised by a lock.

    ``generate_explanations``: explanations that are neither given nor cached are generated with the
    run's backend chain (a local LM runs under the lock, and new entities are written to the explanation
    cache). When false, only the cache (and the run's artifact) is read, and a post whose explanations
    are missing raises :class:`~pgmre.explain.ExplanationsMissing`: callers then pass their own.
    """

    def __init__(
        self,
        pipeline: MREPipeline,
        model: torch.nn.Module,
        name: str = "model",
        generate_explanations: bool = True,
        precision: str | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.model = model.eval()
        #: fp32 or bf16 (``precision`` or the run's ``train.precision``, resolved for this machine)
        self.precision = resolve_precision(
            precision or pipeline.config.train.precision, next(model.parameters()).device
        )
        self.name = name
        #: the run directory and checkpoint it was loaded from (None when built in memory)
        self.run_dir: Path | None = None
        self.checkpoint: str | None = None
        #: the fingerprint of the checkpoint's files as loaded (``PGMRE.fingerprint``; None in memory)
        self.weights_fingerprint: str | None = None
        self.generate_explanations = generate_explanations
        self._lock = threading.Lock()
        self._backends: list[Any] | None = None
        if pipeline.uses_phrases:
            logging.getLogger(__name__).warning(
                "%s reads per-sample phrases (%s): inputs predicted here get an empty phrase, so its "
                "predictions differ from `pgmre evaluate` on the same records (docs/leakage.md)",
                name,
                protocol_statement(pipeline.config),
            )

    def close(self) -> None:
        """Free the explanation backends (a local LM); the predictor stays usable and reloads them."""
        with self._lock:
            for backend in self._backends or []:
                backend.close()
            self._backends = None

    @classmethod
    def from_pretrained(
        cls,
        run_dir: str | Path,
        checkpoint: str = "best",
        device: str | torch.device | None = None,
        generate_explanations: bool = True,
        precision: str | None = None,
    ) -> Predictor:
        """Load ``run_dir/checkpoint``; a missing or damaged run file raises
        :class:`~pgmre.runfiles.RunLoadError` naming it, a damaged explanation cache
        :class:`~pgmre.explain.CacheError` (checked here, so that a server does not start on one).

        ``generate_explanations=False``: never run the explanation backends (see the class);
        ``precision``: auto/fp32/bf16, default the run's ``train.precision``."""
        run_dir = Path(run_dir)
        pipeline = MREPipeline.from_run(run_dir)
        model = pipeline.load_model(run_dir / checkpoint).to(pick_device(device))
        cache = Path(pipeline.config.explain.cache)
        if pipeline.uses_explanations and cache.is_file():
            from pgmre.explain import ExplanationCache

            ExplanationCache(cache).close()  # the integrity check
        predictor = cls(
            pipeline,
            model,
            name=f"{run_dir.name}/{checkpoint}",
            generate_explanations=generate_explanations,
            precision=precision,
        )
        predictor.run_dir, predictor.checkpoint = run_dir, checkpoint
        predictor.weights_fingerprint = model.fingerprint
        return predictor

    # ------------------------------------------------------------------ what the run accepts
    @property
    def labels(self) -> list[str]:
        return list(self.pipeline.vocab.id2rel)

    @property
    def visual_source(self) -> str:
        """``image``, ``caption`` or ``none``: the kind of visual input this run uses."""
        return self.pipeline.config.visual.source if self.pipeline.uses_visual else "none"

    @property
    def uses_explanations(self) -> bool:
        return self.pipeline.uses_explanations

    # ------------------------------------------------------------------ inputs
    def prepare(
        self,
        post: PostInput | Mapping[str, Any],
        max_image_bytes: int | None = None,
        max_image_pixels: int | None = None,
    ) -> PreparedInput:
        """Validate one input (no model call); raises :class:`InputError` saying what is wrong."""
        if isinstance(post, Mapping):
            post = PostInput.from_mapping(post)
        tokens = tokenize(post.text)
        head = resolve_entity(post.head, tokens, "head")
        tail = resolve_entity(post.tail, tokens, "tail")
        check_entity_pair(head, tail)
        image = caption = None
        if post.image is not None:
            if self.visual_source != "image":
                raise InputError(f"image: this run does not use images (visual source: {self.visual_source})")
            image = read_image(post.image, max_image_bytes, max_image_pixels)
        if post.caption is not None:
            if self.visual_source != "caption":
                raise InputError(
                    f"caption: this run does not use captions (visual source: {self.visual_source})"
                )
            caption = caption_text(post.caption)
        explanations = explanation_pair(post.explanations)
        if explanations is not None and not self.uses_explanations:
            raise InputError("explanations: this run was trained without entity explanations")
        sample = Sample(tokens.tokens, head, tail)
        return PreparedInput(sample, image, caption, explanations)

    # ------------------------------------------------------------------ prediction
    def predict(
        self,
        text: str | Sequence[str],
        head: EntitySpec,
        tail: EntitySpec,
        image: ImageInput | None = None,
        caption: str | None = None,
        explanations: tuple[str, str] | Mapping[str, str] | None = None,
        top_k: int = 3,
    ) -> Prediction:
        """The relation between ``head`` and ``tail`` in one post."""
        post = PostInput(text, head, tail, image, caption, explanations)
        return self.predict_prepared([self.prepare(post)], top_k=top_k)[0]

    def predict_batch(
        self,
        inputs: Sequence[PostInput | Mapping[str, Any]],
        top_k: int = 3,
        batch_size: int | None = None,
    ) -> list[Prediction]:
        """Many posts in batches; an invalid one raises :class:`InputError` naming its index."""
        prepared = []
        for i, post in enumerate(inputs):
            try:
                prepared.append(self.prepare(post))
            except InputError as err:
                raise InputError(f"input {i}: {err}") from None
        return self.predict_prepared(prepared, top_k=top_k, batch_size=batch_size)

    def predict_prepared(
        self,
        prepared: Sequence[PreparedInput],
        top_k: int = 3,
        batch_size: int | None = None,
        extras: Sequence[dict[str, Any]] | None = None,
        generate: bool | None = None,
    ) -> list[Prediction]:
        """Predict validated inputs (``extras[i]`` is merged into prediction i's ``to_dict``).

        ``generate=False`` reads explanations from the cache only, even on a predictor that generates
        them (the batcher's second pass, after the batch already asked the backends).

        A record with an ``img_id`` whose visual input is missing raises
        :class:`~pgmre.encoders.missing.MissingInputError` under the run's ``visual.missing=error``."""
        if top_k < 1:
            raise InputError(f"top_k must be at least 1, got {top_k}")
        if not prepared:
            return []
        policies = {_missing_policy(p) for p in prepared}
        if len(policies) > 1:  # new posts and records in one call: each kind with its own policy
            if self.uses_explanations:  # asked for all at once: a failure means every sample was asked
                pairs = self._explanations(prepared, generate)
                prepared = [replace(p, explanations=pair) for p, pair in zip(prepared, pairs, strict=True)]
            return self._predict_by_policy(prepared, top_k, batch_size, extras, generate)
        pipeline = self.pipeline
        samples = [p.sample for p in prepared]
        source = self.visual_source
        with self._lock:
            dataset = pipeline.dataset(
                samples,
                explanations=self._explanations(prepared, generate) if self.uses_explanations else None,
                captions=[p.caption for p in prepared]
                if source == "caption" or pipeline.config.text.caption_segment
                else None,
                images=[p.image for p in prepared] if source == "image" else None,
                # a new post has no grounding phrase (published-protocol models: docs/leakage.md)
                phrases=[""] * len(samples) if pipeline.uses_phrases else None,
                missing=policies.pop(),
            )
            preds = predict_dataset(
                self.model,
                dataset,
                pipeline.collate,
                batch_size=batch_size or pipeline.config.train.eval_batch_size,
                precision=self.precision,
            )
        records = prediction_records(dataset, preds, pipeline.vocab, k=top_k)
        slots = dataset.visual[1].sum(dim=1).tolist() if dataset.visual is not None else [0] * len(samples)
        return [
            Prediction(
                relation=rec["predicted"],
                probability=rec["probability"],
                top_k=[(t["relation"], t["probability"]) for t in rec["top"]],
                explanations=(rec["explanations"]["head"], rec["explanations"]["tail"])
                if rec["explanations"]
                else None,
                attribute_prototype=rec["attribute_prototype"],
                relation_prototype=rec["relation_prototype"],
                tokens=sample.tokens,
                head=sample.head,
                tail=sample.tail,
                visual_slots=int(slots[i]),
                extra=dict(extras[i]) if extras is not None else {},
            )
            for i, (rec, sample) in enumerate(zip(records, samples, strict=True))
        ]

    def _predict_by_policy(
        self,
        prepared: Sequence[PreparedInput],
        top_k: int,
        batch_size: int | None,
        extras: Sequence[dict[str, Any]] | None,
        generate: bool | None,
    ) -> list[Prediction]:
        """``predict_prepared`` per missing-input policy, results back in input order."""
        results: dict[int, Prediction] = {}
        for policy in {_missing_policy(p) for p in prepared}:
            index = [i for i, p in enumerate(prepared) if _missing_policy(p) == policy]
            group = self.predict_prepared(
                [prepared[i] for i in index],
                top_k,
                batch_size,
                [extras[i] for i in index] if extras is not None else None,
                generate,
            )
            results.update(zip(index, group, strict=True))
        return [results[i] for i in range(len(prepared))]

    def _explanations(
        self, prepared: Sequence[PreparedInput], generate: bool | None = None
    ) -> list[tuple[str, str]]:
        """Given explanations where passed; the rest from the run's cache and backend chain."""
        generate = self.generate_explanations if generate is None else generate and self.generate_explanations
        pairs: list[tuple[str, str] | None] = [p.explanations for p in prepared]
        todo = [i for i, pair in enumerate(pairs) if pair is None]
        if todo:
            from pgmre.explain import ExplanationsMissing, build_backends, explanations_for

            cfg = self.pipeline.config.explain
            if self._backends is None:  # kept open: a local LM loads once, not once per call
                self._backends = build_backends(cfg)
            samples = [prepared[i].sample for i in todo]
            try:
                found = explanations_for(samples, cfg, generate=generate, backends=self._backends)
            except ExplanationsMissing:
                if self.generate_explanations:
                    raise
                names = "; ".join(f"head {s.head.name!r}, tail {s.tail.name!r}" for s in samples[:5])
                raise ExplanationsMissing(
                    f"explanations: not all cached for {names}, and this predictor does not generate "
                    "them (generate_explanations off); send the explanations with the request: "
                    "explanations={'head': ..., 'tail': ...}"
                ) from None
            for i, pair in zip(todo, found, strict=True):
                pairs[i] = pair
        return [pair for pair in pairs if pair is not None]


def _missing_policy(prepared: PreparedInput) -> str | None:
    """``blank`` for a new post (no ``img_id``); None (the run's ``visual.missing``) for a record."""
    return "blank" if prepared.sample.img_id is None else None


@functools.lru_cache(maxsize=4)
def _cached_predictor(run_dir: str, checkpoint: str, device: str | None) -> Predictor:
    return Predictor.from_pretrained(run_dir, checkpoint, device)


def infer(
    run_dir: str | Path,
    text: str | Sequence[str],
    head: EntitySpec,
    tail: EntitySpec,
    image: ImageInput | None = None,
    caption: str | None = None,
    explanations: tuple[str, str] | Mapping[str, str] | None = None,
    top_k: int = 3,
    checkpoint: str = "best",
    device: str | None = None,
) -> Prediction:
    """One call, OpenNRE style: the run is loaded once and kept (the last four runs used)."""
    predictor = _cached_predictor(str(Path(run_dir).resolve()), checkpoint, device)
    return predictor.predict(text, head, tail, image, caption, explanations, top_k)


__all__ = ["PostInput", "Prediction", "Predictor", "PreparedInput", "infer"]
