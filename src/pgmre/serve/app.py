"""The HTTP service: ``POST /predict`` (JSON or multipart with an image file), ``/health``, ``/labels``, a page.

Security rules (see ``docs/serving.md``): the server never reads a file path taken from a request (an
image arrives as an uploaded file or a ``data:`` URL, any other string is refused); bodies, images
(bytes and pixels) and texts have limits; a browser request from another site is refused; every invalid
input gets a 4xx with a JSON ``error``, and nothing a client sends gets a 5xx.
Requests are validated in the threadpool; the model runs on one shared
:class:`~pgmre.serve.predictor.Predictor` behind a :class:`~pgmre.serve.batching.MicroBatcher`, which
predicts concurrent requests together.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgmre.data.parsing import ParseError, parse_json, shown
from pgmre.encoders.feature_cache import MemoryLRU
from pgmre.explain import BackendUnavailable, ExplanationsMissing
from pgmre.explain.cache import CacheCorrupt, CacheError
from pgmre.serve.batching import MicroBatcher
from pgmre.serve.health import ExplanationCacheHealth
from pgmre.serve.inputs import ImageTooLarge, InputError
from pgmre.serve.predictor import PostInput, Predictor, PreparedInput

log = logging.getLogger(__name__)

STATIC = resources.files("pgmre.serve").joinpath("static")
# The page loads only its own script and style; nothing from elsewhere, no inline code.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
FORM_FIELDS = ("text", "head", "tail", "caption", "explanations", "top_k")
DEFAULT_FEATURE_CACHE_MB = 256.0
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ServeLimits(BaseModel):
    """What one request may send; larger inputs get 413 (sizes) or 422 (text lengths)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_body_bytes: int = Field(10 << 20, ge=1024, description="whole request body")
    max_image_bytes: int = Field(8 << 20, ge=1024, description="one image file")
    max_image_pixels: int = Field(25_000_000, ge=1, description="width x height of one image")
    max_text_chars: int = Field(2000, ge=1, description="post text, caption, each explanation, entity names")


class ApiError(Exception):
    """A request the service refuses: ``status`` (4xx) and a message for the JSON ``error`` field."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


class BodyLimit:
    """ASGI middleware: refuse bodies over ``max_bytes`` by Content-Length, or while streaming."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = ApiError(413, f"request body over the limit of {self.max_bytes} bytes")
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await _error(413, too_large.message)(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise too_large
            return message

        await self.app(scope, counted, send)


class SameOriginOnly:
    """ASGI middleware: refuse requests that change state (POST...) sent by a web page of another origin.

    Without it any page a user visits could post a form to the local server and make it run the model and
    store entity names in the explanation cache. A browser says where a request comes from (``Origin``,
    ``Sec-Fetch-Site``); the server's own page is same-origin. Clients that are not browsers (curl, httpx)
    send neither and are served. ``allowed_origins`` (e.g. ``https://mre.example.org`` behind a proxy)
    are accepted as well.
    """

    def __init__(self, app: ASGIApp, allowed_origins: Collection[str] = ()) -> None:
        self.app = app
        self.allowed_origins = frozenset(o.rstrip("/").lower() for o in allowed_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in SAFE_METHODS:
            refusal = self.refusal(Headers(scope=scope))
            if refusal is not None:
                await _error(403, refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def refusal(self, headers: Headers) -> str | None:
        origin = headers.get("origin")
        if origin is not None and origin.rstrip("/").lower() in self.allowed_origins:
            return None
        site = headers.get("sec-fetch-site")
        if site is not None and site.lower() not in ("same-origin", "none"):
            return f"cross-site request refused (Sec-Fetch-Site: {site[:40]}); use this server's own page"
        if origin is not None and _netloc(origin) != headers.get("host", "").lower():
            return f"cross-origin request refused (Origin: {origin[:100]}); use this server's own page"
        return None


def _netloc(origin: str) -> str | None:
    try:
        return urlsplit(origin).netloc.lower() or None
    except ValueError:  # e.g. an unclosed IPv6 bracket
        return None


# ---------------------------------------------------------------- request parsing


def _data_url_bytes(value: Any) -> bytes:
    """A JSON ``image``: only a base64 ``data:`` URL; a path or URL is refused, never opened."""
    refusal = (
        "image: send the file itself (multipart upload or a base64 data: URL); file paths are never read"
    )
    if not isinstance(value, str) or not value.startswith("data:"):
        raise ApiError(422, refusal)
    header, sep, payload = value.partition(",")
    if not sep or not header.endswith(";base64"):
        raise ApiError(422, "image: a data: URL must be base64 encoded (data:image/...;base64,...)")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(422, "image: the data: URL is not valid base64") from None


def _parse_json(text: str, what: str, status: int) -> Any:
    try:
        return parse_json(text)
    except ParseError as err:  # malformed, nested too deeply, an integer of thousands of digits
        raise ApiError(status, f"{what}: malformed JSON ({err})") from None


def _form_value(name: str, value: str) -> Any:
    """Multipart fields are text; spans and explanation pairs come JSON-encoded (``{...}`` / ``[...]``).

    Browsers send every line break of a form field as CRLF (the HTML form encoding), while the page
    counts an entity's characters in the textarea's value, where a line break is LF: back to LF, so
    that those character offsets hold.
    """
    value = value.replace("\r\n", "\n")
    if name == "top_k" or (
        name in ("head", "tail", "explanations") and value.lstrip().startswith(("[", "{"))
    ):
        return _parse_json(value, name, 422)  # the body is fine, this field's value is not
    return value


async def _read_json(request: Request) -> tuple[dict[str, Any], bytes | None]:
    try:
        text = (await request.body()).decode("utf-8")
    except UnicodeDecodeError as err:
        raise ApiError(400, f"body: not UTF-8 text ({err.reason} at byte {err.start})") from None
    body = _parse_json(text, "body", 400)
    if not isinstance(body, dict):
        raise ApiError(422, f"expected a JSON object, got {type(body).__name__}")
    image = body.pop("image", None)
    return body, _data_url_bytes(image) if image is not None else None


async def _read_form(request: Request, limits: ServeLimits) -> tuple[dict[str, Any], bytes | None]:
    try:
        form = await request.form(
            max_files=1, max_fields=len(FORM_FIELDS) + 1, max_part_size=limits.max_body_bytes
        )
    except HTTPException as err:  # Starlette's answer to a MultiPartException inside an app
        raise ApiError(400, f"malformed form body: {err.detail}") from None
    except MultiPartException as err:
        raise ApiError(400, f"malformed form body: {err.message}") from None
    body: dict[str, Any] = {}
    image: bytes | None = None
    for name, value in form.multi_items():
        if name in body or (name == "image" and image is not None):
            raise ApiError(422, f"{name}: given more than once")
        if name == "image":
            if not isinstance(value, UploadFile):
                raise ApiError(422, "image: upload the file itself; file paths are never read")
            image = await value.read(limits.max_image_bytes + 1)
            if len(image) > limits.max_image_bytes:
                raise ApiError(413, f"image: over the limit of {limits.max_image_bytes} bytes")
        elif isinstance(value, UploadFile):
            raise ApiError(422, f"{name}: expected a text field, got a file")
        else:
            body[name] = _form_value(name, value)
    return body, image


def _check_lengths(body: Mapping[str, Any], limit: int) -> None:
    text = body.get("text")
    size = None  # other types are refused later, with their own message
    if isinstance(text, str):
        size = len(text)
    elif isinstance(text, list) and all(isinstance(t, str) for t in text):
        size = len(" ".join(text))
    if size is not None and size > limit:
        raise ApiError(422, f"text: {size} characters, over the limit of {limit}")
    others = {"caption": body.get("caption")}
    for role in ("head", "tail"):  # a name, or a span whose name is checked against the text
        entity = body.get(role)
        others[role] = entity
        if isinstance(entity, Mapping):
            others[f"{role}.name"] = entity.get("name")
    explanations = body.get("explanations")
    if isinstance(explanations, Mapping):
        others.update({f"explanations.{k}": v for k, v in explanations.items()})
    elif isinstance(explanations, list):
        others.update({f"explanations[{i}]": v for i, v in enumerate(explanations)})
    for name, value in others.items():
        if isinstance(value, str) and len(value) > limit:
            raise ApiError(422, f"{name}: {len(value)} characters, over the limit of {limit}")


def _top_k(body: dict[str, Any], labels: int) -> int:
    value = body.pop("top_k", 3)
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= labels:
        raise ApiError(422, f"top_k: expected an integer from 1 to {labels}, got {shown(value)}")
    return value


# ---------------------------------------------------------------- the app


def create_app(
    predictor: Predictor,
    limits: ServeLimits | None = None,
    max_batch: int = 16,
    max_wait_ms: float = 5.0,
    feature_cache_mb: float = DEFAULT_FEATURE_CACHE_MB,
    allowed_origins: Collection[str] = (),
) -> FastAPI:
    """The service around one loaded predictor; up to ``max_batch`` concurrent requests share a batch.

    Features of new images, captions and explanations are kept in memory, at most ``feature_cache_mb``
    (least recently used first out); the run's feature cache on disk is only read. ``allowed_origins``:
    web origins besides the server's own whose pages may post to it.
    """
    limits = limits or ServeLimits()
    if feature_cache_mb < 0:
        raise ValueError(f"feature_cache_mb must be at least 0, got {feature_cache_mb}")
    feature_memory = MemoryLRU(int(feature_cache_mb * 2**20))
    for cache in predictor.pipeline.feature_caches():
        cache.memory = feature_memory
    batcher = MicroBatcher(predictor, max_batch=max_batch, max_wait_s=max_wait_ms / 1000)
    explanation_cache = ExplanationCacheHealth(
        predictor.pipeline.config.explain.cache if predictor.uses_explanations else None
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await run_in_threadpool(batcher.close)

    app = FastAPI(
        title="pgmre",
        summary="Multimodal relation extraction with PG-MRE",
        docs_url=None,  # the interactive docs load scripts from a CDN; the schema stays at /openapi.json
        redoc_url=None,
        lifespan=lifespan,
    )
    app.add_middleware(BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(SameOriginOnly, allowed_origins=allowed_origins)  # outermost: before any body is read
    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.message)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, err: HTTPException) -> JSONResponse:
        """Starlette's own refusals (unknown path, wrong method...) in the same ``{"error"}`` shape."""
        return JSONResponse({"error": str(err.detail)}, status_code=err.status_code, headers=err.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, err: RequestValidationError) -> JSONResponse:
        where = "; ".join(
            f"{'.'.join(str(part) for part in e.get('loc', ()))}: {e.get('msg', 'invalid')}"
            for e in err.errors()
        )
        return _error(422, where or "invalid request")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("error while serving %s %s", request.method, request.url.path)
        return _error(500, "internal error (logged on the server)")

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(str(STATIC.joinpath("index.html")), headers=PAGE_HEADERS)

    @app.get("/health")
    async def health() -> JSONResponse:
        """Liveness, and what this model accepts (the page adapts its form to it); 503 and ``error`` when
        the server cannot answer (a damaged explanation cache)."""
        problem = await run_in_threadpool(explanation_cache.problem)
        status = {"status": "ok"} if problem is None else {"status": "unavailable", "error": problem}
        body = {
            **status,
            "model": predictor.name,
            "compute_precision": predictor.precision,
            "inputs": {
                "visual": predictor.visual_source,
                "explanations": predictor.uses_explanations,
                "generates_explanations": predictor.uses_explanations and predictor.generate_explanations,
            },
            "limits": limits.model_dump(),
            "batching": {
                "max_batch": batcher.max_batch,
                "batches": batcher.batches,
                "served": batcher.served,
            },
            "feature_cache": feature_memory.stats(),
        }
        return JSONResponse(body, status_code=200 if problem is None else 503)

    @app.get("/labels")
    async def labels() -> dict[str, Any]:
        return {"labels": predictor.labels, "negative": "None"}

    @app.post("/predict")
    async def predict(request: Request) -> dict[str, Any]:
        """One post: JSON (image as a data: URL) or a form (multipart: image as a file)."""
        kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if kind == "application/json":
            body, image = await _read_json(request)
        elif kind in ("multipart/form-data", "application/x-www-form-urlencoded"):
            body, image = await _read_form(request, limits)
        else:
            raise ApiError(415, "send application/json or multipart/form-data (a form)")
        if image is not None and len(image) > limits.max_image_bytes:
            raise ApiError(413, f"image: over the limit of {limits.max_image_bytes} bytes")
        top_k = _top_k(body, len(predictor.labels))
        _check_lengths(body, limits.max_text_chars)
        prepared = await run_in_threadpool(_prepare, predictor, body, image, limits)
        try:
            prediction = await asyncio.wrap_future(batcher.submit(prepared, top_k))
        except CacheCorrupt as err:
            log.error("%s", err)
            explanation_cache.report(err)
            raise ApiError(
                503, "the server's explanation cache is damaged; GET /health says how to repair it"
            ) from None
        except CacheError as err:  # e.g. locked by a long write elsewhere
            log.error("%s", err)
            raise ApiError(
                503, "the server's explanation cache cannot be read right now; retry later"
            ) from None
        except BackendUnavailable as err:  # e.g. the local LM's package is not installed on the server
            log.error("%s", err)
            raise ApiError(
                503, "the server's explanation backend is unavailable; send 'explanations' with the request"
            ) from None
        except ExplanationsMissing as err:
            if not predictor.generate_explanations:  # the message names only the request's entities
                raise ApiError(422, str(err)) from None
            raise ApiError(
                422,
                "no entity explanation is available for this post from the server's backends; "
                "send 'explanations' with the request",
            ) from None
        return prediction.to_dict()

    return app


def _prepare(
    predictor: Predictor, body: dict[str, Any], image: bytes | None, limits: ServeLimits
) -> PreparedInput:
    """Validate one request (in a worker thread: images are decoded here); problems become 4xx errors."""
    try:
        post = PostInput.from_mapping({**body, "image": image})
        return predictor.prepare(
            post, max_image_bytes=limits.max_image_bytes, max_image_pixels=limits.max_image_pixels
        )
    except ImageTooLarge as err:
        raise ApiError(413, str(err)) from None
    except InputError as err:
        raise ApiError(422, str(err)) from None
