"""Any OpenAI-compatible chat-completions server over HTTP (httpx, asyncio).

N requests in flight, a request-rate limit, per-request timeouts, retries with exponential backoff and
jitter on timeouts, connection errors, 408/429/5xx and malformed replies, honouring ``Retry-After``.
Every request ends explained or failed (with the last error): none is dropped.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import email.utils
import os
import random
import time
from typing import TYPE_CHECKING, Any

import httpx

from pgmre.explain.backends.base import Backend
from pgmre.explain.prompts import PromptTemplate
from pgmre.explain.text import clean_explanation
from pgmre.explain.types import ExplanationRequest, ExplanationResult

if TYPE_CHECKING:
    from pgmre.config import OpenAIBackendConfig

RETRY_STATUS = {408, 409, 425, 429}


class _Retryable(Exception):
    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Fatal(Exception):
    """A reply that retrying will not fix (400, 401, 404...)."""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class RateLimiter:
    """At most ``rate`` request starts per second, spaced evenly (retries count too)."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            delay = self._next - now
            self._next = max(now, self._next) + self.interval
        if delay > 0:
            await asyncio.sleep(delay)


def parse_reply(body: bytes) -> tuple[str, int | None, bool]:
    """(content, completion tokens, cut by max_tokens) of a chat-completions reply; raises _Retryable."""
    import json

    try:
        data = json.loads(body)
        choice = data["choices"][0]
        content = choice["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError, RecursionError) as err:  # deep nesting too
        raise _Retryable(f"malformed reply ({type(err).__name__}: {str(err)[:80]}): {body[:120]!r}") from None
    if not isinstance(content, str) or not content.strip():
        raise _Retryable(f"malformed reply: no message content: {body[:120]!r}")
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = usage.get("completion_tokens") if isinstance(usage, dict) else None
    return content, tokens if isinstance(tokens, int) else None, choice.get("finish_reason") == "length"


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, cfg: OpenAIBackendConfig, template: PromptTemplate, max_new_tokens: int) -> None:
        self.cfg = cfg
        self.prompt = template
        self.template = template.version
        self.model = cfg.model
        self.max_new_tokens = max_new_tokens
        base_url = cfg.base_url.rstrip("/")
        # The server is part of what produced an explanation: the same model name on another server
        # (a local vLLM, another provider) is another model.
        self.settings = {"max_tokens": max_new_tokens, "temperature": cfg.temperature, "base_url": base_url}
        self.chunk_size = cfg.concurrency * 4
        self.url = base_url + "/chat/completions"

    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.cfg.api_key_env)
        return {"Authorization": f"Bearer {key}"} if key else {}

    def explain(self, requests: list[ExplanationRequest]) -> list[ExplanationResult]:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return asyncio.run(self.explain_async(requests))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:  # called from async code: own loop
            return pool.submit(asyncio.run, self.explain_async(requests)).result()

    async def explain_async(self, requests: list[ExplanationRequest]) -> list[ExplanationResult]:
        limiter = RateLimiter(self.cfg.requests_per_second)
        slots = asyncio.Semaphore(self.cfg.concurrency)
        timeout = httpx.Timeout(self.cfg.timeout_s)
        limits = httpx.Limits(max_connections=self.cfg.concurrency)
        async with httpx.AsyncClient(timeout=timeout, limits=limits, headers=self._headers()) as client:

            async def one(request: ExplanationRequest) -> ExplanationResult:
                async with slots:
                    return await self._with_retries(client, limiter, request)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.cfg.retry_max_s, self.cfg.retry_base_s * 2**attempt)
        delay = backoff / 2 + random.uniform(0, backoff / 2)  # "equal jitter"
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.cfg.retry_max_s))
        return delay

    async def _with_retries(
        self, client: httpx.AsyncClient, limiter: RateLimiter, request: ExplanationRequest
    ) -> ExplanationResult:
        body: dict[str, Any] = {
            "model": self.cfg.model,
            "messages": self.prompt.messages(request),
            "max_tokens": self.max_new_tokens,
            "temperature": self.cfg.temperature,
        }
        error = "not attempted"
        retry_after: float | None = None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt - 1, retry_after))
            retry_after = None
            await limiter.wait()
            started = time.perf_counter()
            try:
                content, tokens, cut = await self._post(client, body)
            except _Retryable as err:
                error, retry_after = str(err), err.retry_after
                continue
            except _Fatal as err:
                return ExplanationResult(request, error=str(err))
            text = clean_explanation(content, self.max_new_tokens, truncated=cut)
            if not text:
                error = f"empty explanation after cleaning: {content[:80]!r}"
                continue
            return ExplanationResult(
                request, text=text, latency_s=time.perf_counter() - started, tokens=tokens
            )
        return ExplanationResult(request, error=f"gave up after {self.cfg.max_retries + 1} attempts: {error}")

    async def _post(self, client: httpx.AsyncClient, body: dict[str, Any]) -> tuple[str, int | None, bool]:
        try:
            reply = await client.post(self.url, json=body)
        except httpx.TimeoutException:
            raise _Retryable(f"timed out after {self.cfg.timeout_s}s") from None
        except httpx.RequestError as err:  # transport, and a body its Content-Encoding cannot decode
            raise _Retryable(f"{type(err).__name__}: {err}") from None
        status = reply.status_code
        if status in RETRY_STATUS or status >= 500:
            raise _Retryable(
                f"HTTP {status}: {reply.text[:120]}", parse_retry_after(reply.headers.get("retry-after"))
            )
        if status >= 400:
            raise _Fatal(f"HTTP {status} from {self.url}: {reply.text[:200]}")
        return parse_reply(reply.content)
