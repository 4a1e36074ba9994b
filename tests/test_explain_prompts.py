"""Prompt templates, request building (never the label) and output cleaning."""

from __future__ import annotations

import pytest

from pgmre.data.types import Entity, Sample
from pgmre.explain import ExplanationRequest, get_template, requests_for
from pgmre.explain.text import approx_tokens, clean_explanation, drop_partial_sentence


def sample(relation: str | None, tokens: str = "Messi scores for Barcelona today") -> Sample:
    words = tuple(tokens.split())
    return Sample(words, Entity("Messi", 0, 1), Entity("Barcelona", 3, 4), "img.jpg", relation)


def test_requests_never_see_the_label() -> None:
    labelled = requests_for([sample("/per/org/member_of")])
    assert labelled == requests_for([sample("None")]) == requests_for([sample(None)])
    assert labelled == [
        ExplanationRequest("Messi", "Messi scores for Barcelona today", "Barcelona"),
        ExplanationRequest("Barcelona", "Messi scores for Barcelona today", "Messi"),
    ]
    for version in ("v1", "v2"):
        for message in get_template(version).messages(labelled[0]):
            assert "member_of" not in message["content"] and "per" not in message["content"].split()


def test_partner_is_part_of_the_request_only_when_shown() -> None:
    request = ExplanationRequest("Messi", "a post", "Barcelona")
    v1, v2 = get_template("v1"), get_template("v2")
    assert not v1.uses_partner and v1.normalise(request) == ExplanationRequest("Messi", "a post")
    assert "Barcelona" not in v1.messages(request)[1]["content"]
    assert v2.uses_partner and v2.normalise(request) == request
    assert "mentioned with Barcelona" in v2.messages(request)[1]["content"]
    with pytest.raises(ValueError, match="needs the partner"):
        v2.messages(ExplanationRequest("Messi", "a post"))
    with pytest.raises(ValueError, match="unknown prompt template 'v9'"):
        get_template("v9")


def test_templates_are_frozen() -> None:
    # Cache keys name the version: a wording change must be a new version, never an edit.
    v1 = get_template("v1")
    assert (v1.system, v1.user) == (
        "Give a short encyclopedic definition of the entity.",
        'Post: "{sentence}"\nWho or what is {entity}?',
    )


def test_clean_explanation() -> None:
    assert clean_explanation('  Explanation:  "Paris is the capital\n of France."  ', 40) == (
        "Paris is the capital of France."
    )
    cut = clean_explanation(
        "Paris is a city. It is the capital of France and home to many", 40, truncated=True
    )
    assert cut == "Paris is a city."
    assert clean_explanation("Paris is a city in France. " * 10, 12) == "Paris is a city in France."
    assert clean_explanation("one two three four five six", 4) == "one two three four"  # no sentence: kept
    assert clean_explanation("   ", 10) == ""
    assert approx_tokens("U.S. city, 2019!") == 8


def test_abbreviations_are_not_sentence_ends() -> None:
    assert drop_partial_sentence("He lives in the U.S. and works at J. P. Morgan as a") == (
        "He lives in the U.S. and works at J. P. Morgan as a"
    )
    assert drop_partial_sentence('It is "big." Then the') == 'It is "big."'
