"""Hypothesis fuzzing of the HTTP API: whatever a client sends, the answer is never a 5xx.

Properties, for JSON bodies, forms (multipart and URL-encoded), raw bytes and images of random sizes,
aspect ratios, modes and formats: the status is below 500; a refusal is a 4xx whose body is exactly
``{"error": <text>}``; an answer (200) is a prediction. Bounded (a few dozen examples per test, a fixed
seed) so that the suite stays fast and deterministic; set ``PGMRE_FUZZ_EXAMPLES`` (e.g. 1000) to search
longer, on new random examples each time.
"""

from __future__ import annotations

import io
import json
import os
import random
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from PIL import Image

from pgmre.serve.app import ServeLimits, create_app
from pgmre.serve.predictor import Predictor

EXAMPLES = int(os.environ.get("PGMRE_FUZZ_EXAMPLES", "25"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize="PGMRE_FUZZ_EXAMPLES" not in os.environ,  # make test: the same examples on every run
    database=None,  # no .hypothesis/ directory in the working tree
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMITS = ServeLimits(max_body_bytes=256 << 10, max_image_bytes=64 << 10, max_image_pixels=200 * 200)
TEXT = "Jonas Berg joined Summit Bank in Oslo"


@pytest.fixture(scope="module")
def image_client(trained_image_run: Path) -> TestClient:
    # raise_server_exceptions=False: a 5xx is then an answer to check, not an exception in the test
    return TestClient(
        create_app(Predictor.from_pretrained(trained_image_run), LIMITS), raise_server_exceptions=False
    )


@pytest.fixture(scope="module")
def caption_client(trained_caption_run: Path) -> TestClient:
    predictor = Predictor.from_pretrained(trained_caption_run, generate_explanations=False)
    return TestClient(create_app(predictor, LIMITS), raise_server_exceptions=False)


def check(response: Any) -> None:
    """Never a 5xx; refusals are ``{"error": text}``; answers are predictions."""
    event(f"status {response.status_code}")  # pytest --hypothesis-show-statistics shows the mix
    assert response.status_code < 500, response.text
    body = response.json()
    if response.status_code >= 400:
        assert set(body) == {"error"} and isinstance(body["error"], str) and body["error"], body
    else:
        assert response.status_code == 200 and isinstance(body["relation"], str), body


# ---------------------------------------------------------------- strategies

# Text from every Unicode category, lone surrogates included (JSON can spell them).
any_text = st.text(st.characters(codec=None), max_size=40)
words = st.sampled_from(["Jonas", "Berg", "Jonas Berg", "Summit Bank", "Oslo", "in", "", " ", "jonas berg"])
big_ints = st.integers(min_value=-(10**30), max_value=10**30) | st.sampled_from([0, 1, 2, 7, -1, 10**400])
small_ints = st.integers(min_value=-3, max_value=12)
span = st.lists(small_ints | big_ints, min_size=0, max_size=3)
entity = (
    words
    | any_text
    | span
    | st.fixed_dictionaries({}, optional={"name": words | any_text | st.none(), "pos": span, "chars": span})
    | st.dictionaries(any_text, small_ints, max_size=2)
    | st.none()
    | st.booleans()
    | st.floats(allow_nan=True)
)
json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | big_ints | any_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(any_text, inner, max_size=3),
    max_leaves=8,
)
explanations = (
    st.fixed_dictionaries({"head": any_text | words, "tail": any_text | words})
    | st.lists(any_text | words, max_size=3)
    | json_values
)
top_k = small_ints | big_ints | st.floats() | any_text | st.booleans() | st.none()
sentences = st.sampled_from(["A person.", "A bank in Norway.", "a red logo"]) | any_text.filter(str.strip)
# Posts the model answers (entities that occur once, explanations given), so that the fuzz reaches it.
valid_head = st.sampled_from(
    ["Jonas Berg", "jonas berg", "Jonas", (0, 2), [1, 2], {"pos": [0, 1]}, {"chars": [0, 5]}]
)
valid_tail = st.sampled_from(
    ["Summit Bank", "Oslo", [3, 5], [4, 5], {"chars": [18, 29]}, {"name": "Oslo", "pos": [6, 7]}]
)
valid_post = st.fixed_dictionaries(
    {
        "text": st.just(TEXT),
        "head": valid_head,
        "tail": valid_tail,
        "explanations": st.tuples(sentences, sentences),
    },
    optional={"top_k": st.integers(1, 23), "caption": sentences},
)
wild_post = st.fixed_dictionaries(
    {
        "text": st.just(TEXT) | any_text | st.lists(any_text | words, max_size=6),
        "head": entity,
        "tail": entity,
    },
    optional={
        "top_k": top_k,
        "caption": any_text | words | json_values,
        "explanations": explanations,
        "image": any_text | st.just("data:image/png;base64,iVBORw0KGgo="),
        "colour": json_values,
    },
)
post = valid_post | wild_post


@st.composite
def images(draw: st.DrawFn) -> bytes:
    """An image of random size and aspect ratio (thin ones included), mode and format; sometimes damaged."""
    width = draw(st.integers(1, 260) | st.sampled_from([1, 2, 3]))
    height = draw(st.integers(1, 260) | st.sampled_from([1, 2, 3]))
    mode = draw(st.sampled_from(["RGB", "L", "RGBA", "P", "1", "CMYK", "I;16"]))
    fmt = draw(st.sampled_from(["PNG", "JPEG", "GIF", "BMP", "WEBP", "TIFF"]))
    seed = draw(st.integers(0, 2**16))
    noise = random.Random(seed).randbytes(width * height)  # deterministic: Hypothesis replays examples
    picture = Image.frombytes("L", (width, height), noise).convert(mode if mode != "I;16" else "L")
    if mode == "I;16":
        picture = picture.convert("I;16")
    buffer = io.BytesIO()
    try:
        picture.save(buffer, format=fmt)
    except (OSError, ValueError, KeyError):  # a mode this format cannot store: send it as PNG
        buffer = io.BytesIO()
        picture.convert("RGB").save(buffer, format="PNG")
    data = buffer.getvalue()
    cut = draw(st.none() | st.integers(0, len(data)))
    if cut is not None:  # truncated, or with some bytes overwritten
        flips = draw(
            st.lists(st.tuples(st.integers(0, max(0, len(data) - 1)), st.integers(0, 255)), max_size=4)
        )
        damaged = bytearray(data[: max(cut, 1)] if draw(st.booleans()) else data)
        for at, value in flips:
            if at < len(damaged):
                damaged[at] = value
        data = bytes(damaged)
    return data


def form_value(value: Any) -> str:
    """A form field's text; a lone surrogate becomes what its bytes decode to (a form carries bytes)."""
    text = value if isinstance(value, str) else json.dumps(value)
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


# ---------------------------------------------------------------- properties


@FUZZ
@given(body=post)
def test_json_bodies_never_5xx(caption_client: TestClient, body: dict[str, Any]) -> None:
    content = json.dumps(body).encode()  # json.dumps escapes lone surrogates as \udXXX: they arrive as such
    check(caption_client.post("/predict", content=content, headers={"content-type": "application/json"}))


@FUZZ
@given(value=json_values)
def test_any_json_value_never_5xx(caption_client: TestClient, value: Any) -> None:
    check(
        caption_client.post(
            "/predict", content=json.dumps(value), headers={"content-type": "application/json"}
        )
    )


@FUZZ
@given(
    raw=st.binary(max_size=2000) | st.text(max_size=200).map(str.encode),
    kind=st.sampled_from(
        [
            "application/json",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "multipart/form-data; boundary=x; charset=unicode_escape",
            "application/x-www-form-urlencoded",
            "text/plain",
            "",
        ]
    ),
)
def test_raw_bodies_never_5xx(caption_client: TestClient, raw: bytes, kind: str) -> None:
    check(caption_client.post("/predict", content=raw, headers={"content-type": kind} if kind else {}))


@FUZZ
@given(
    body=post, extra=st.dictionaries(st.sampled_from(["text", "x", "image", "top_k"]), any_text, max_size=2)
)
def test_forms_never_5xx(caption_client: TestClient, body: dict[str, Any], extra: dict[str, str]) -> None:
    fields = {name: form_value(value) for name, value in {**body, **extra}.items()}
    check(caption_client.post("/predict", data=fields))


@FUZZ
@given(image=images(), head=valid_head | entity, tail=valid_tail | entity, top=st.integers(1, 23) | top_k)
def test_multipart_images_never_5xx(
    image_client: TestClient, image: bytes, head: Any, tail: Any, top: Any
) -> None:
    fields = {"text": TEXT, "head": form_value(head), "tail": form_value(tail)}
    if top is not None:
        fields["top_k"] = form_value(top)
    check(
        image_client.post(
            "/predict", data=fields, files={"image": ("post", image, "application/octet-stream")}
        )
    )


@FUZZ
@given(image=images())
def test_valid_posts_with_any_readable_image_are_answered(image_client: TestClient, image: bytes) -> None:
    """The good inputs are not lost: an image that decodes gets a prediction that used it."""
    fields = {"text": TEXT, "head": "Jonas Berg", "tail": "Summit Bank"}
    response = image_client.post("/predict", data=fields, files={"image": ("post", image, "image/png")})
    check(response)
    try:
        with Image.open(io.BytesIO(image)) as picture:
            picture.load()
            readable = (
                picture.width * picture.height <= LIMITS.max_image_pixels
                and len(image) <= LIMITS.max_image_bytes
            )
    except Exception:
        readable = False
    if readable:
        assert response.status_code == 200, response.text
        assert response.json()["visual_slots"] >= 1
    else:
        assert response.status_code in (413, 422), response.text
