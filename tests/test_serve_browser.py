"""The web page in real headless Chromium against a live server on 127.0.0.1."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.data.types import Sample
from pgmre.serve.app import create_app
from pgmre.serve.background import BackgroundServer
from pgmre.serve.inputs import tokenize
from pgmre.serve.predictor import Predictor

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(shutil.which(CHROMIUM) is None, reason=f"{CHROMIUM} is absent (make install adds it)"),
]


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
        )
        context.set_default_timeout(30_000)
        yield context
        context.close()


@pytest.fixture(scope="module")
def samples(synthetic_dataset: SyntheticDataset) -> list[Sample]:
    return load_samples(synthetic_dataset.test)


def char_span(text: str, entity_start: int, entity_end: int) -> tuple[int, int]:
    offsets = tokenize(text).offsets
    return offsets[entity_start][0], offsets[entity_end - 1][1]


def test_mark_entities_and_predict(
    browser: object, trained_caption_run: Path, samples: list[Sample], synthetic_dataset: SyntheticDataset
) -> None:
    sample = samples[4]
    text = sample.text
    start, end = char_span(text, sample.head.start, sample.head.end)
    caption = "a blue square on a stage"
    with BackgroundServer(create_app(Predictor.from_pretrained(trained_caption_run))) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(url)
        page.wait_for_selector("#caption-field:not([hidden])")  # the form adapts to /health
        assert not page.is_visible("#image") and "visual input: caption" in page.inner_text("#model")

        page.fill("#text", text)
        page.locator("#text").evaluate("(area, [s, e]) => area.setSelectionRange(s, e)", [start, end])
        page.click("#mark-head")  # the selection becomes the head entity
        assert page.input_value("#head") == sample.head.name
        page.fill("#tail", sample.tail.name)  # typed: found in the text by the server
        page.fill("#caption", caption)
        page.fill("#top-k", "4")
        page.click("#predict")
        page.wait_for_selector("#result:not([hidden])")

        api = httpx.post(
            f"{url}/predict",
            json={
                "text": text,
                "head": {"chars": [start, end]},
                "tail": sample.tail.name,
                "caption": caption,
                "top_k": 4,
            },
            timeout=60,
        ).json()
        assert page.inner_text("#relation") == api["relation"]
        assert page.locator("#bars li").count() == 4
        assert page.locator("#bars li .name").all_inner_texts() == [t["relation"] for t in api["top_k"]]
        assert page.inner_text("#post mark.head") == sample.head.name
        assert page.inner_text("#post mark.tail") == sample.tail.name
        why = page.inner_text("#why")
        assert api["explanations"]["head"] in why and api["explanations"]["tail"] in why

        # An error from the server is shown, and the old result is hidden.
        page.fill("#tail", "Nobody Known")
        page.click("#predict")
        page.wait_for_selector("#error:not([hidden])")
        assert "'Nobody Known' does not occur in the text" in page.inner_text("#error")
        assert not page.is_visible("#result")

        # Characters outside the BMP: the browser's selection counts UTF-16 units, the server code points.
        emoji = "\U0001f600 "
        page.fill("#text", emoji + text)
        utf16 = len(emoji.encode("utf-16-le")) // 2
        page.locator("#text").evaluate(
            "(area, [s, e]) => area.setSelectionRange(s, e)", [start + utf16, end + utf16]
        )
        page.click("#mark-head")
        assert page.input_value("#head") == sample.head.name
        assert f"characters {start + len(emoji)}–{end + len(emoji)}" in page.inner_text("#head-where")
        page.fill("#tail", sample.tail.name)
        page.click("#predict")
        page.wait_for_selector("#result:not([hidden])")
        assert not page.is_visible("#error")
        assert page.inner_text("#post mark.head") == sample.head.name
        page.close()


def test_upload_an_image(
    browser: object, trained_image_run: Path, samples: list[Sample], synthetic_dataset: SyntheticDataset
) -> None:
    sample = samples[5]
    image = synthetic_dataset.image_dir / (sample.img_id or "")
    with BackgroundServer(create_app(Predictor.from_pretrained(trained_image_run))) as url:
        page = browser.new_page()  # type: ignore[attr-defined]
        page.goto(url)
        page.wait_for_selector("#image-field:not([hidden])")
        assert not page.is_visible("#caption") and "explanations: no" in page.inner_text("#model")
        page.fill("#text", sample.text)
        page.fill("#head", sample.head.name)
        page.fill("#tail", sample.tail.name)
        page.set_input_files("#image", str(image))
        page.click("#predict")
        page.wait_for_selector("#result:not([hidden])")
        with image.open("rb") as handle:
            api = httpx.post(
                f"{url}/predict",
                data={"text": sample.text, "head": sample.head.name, "tail": sample.tail.name, "top_k": "5"},
                files={"image": (image.name, handle, "image/jpeg")},
                timeout=60,
            ).json()
        assert api["visual_slots"] == 3
        assert page.inner_text("#relation") == api["relation"]
        assert f"{api['probability'] * 100:.1f}%" in page.inner_text("#probability")
        assert "visual inputs seen\n3" in page.inner_text("#why").replace("\t", "\n")
        page.close()
