"""Label-free entity-type phrases from spaCy NER (`pgmre data phrases`), the honest control for TMR's."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.entity_types import entity_type_phrases, load_ner
from pgmre.data.mnre import write_samples
from pgmre.data.phrases import phrases_for
from pgmre.data.types import Entity, Sample


def post(text: str, head: tuple[int, int], tail: tuple[int, int], relation: str = "None") -> Sample:
    tokens = tuple(text.split())
    h = Entity(" ".join(tokens[head[0] : head[1]]), *head)
    t = Entity(" ".join(tokens[tail[0] : tail[1]]), *tail)
    return Sample(tokens, h, t, "img.jpg", relation)


SAMPLES = [
    post("Barack Obama gave a speech in Berlin on Monday", (0, 2), (6, 7), "/per/loc/place_of_residence"),
    post("Barack Obama gave a speech in Berlin on Monday", (6, 7), (0, 2)),
    post("Tim Cook said Apple will open a store in Paris", (0, 2), (3, 4), "/per/org/member_of"),
    post("the cat and the dog sat on a mat", (1, 2), (4, 5)),
]


@pytest.fixture(scope="module")
def nlp() -> object:
    return load_ner()


def test_every_sample_gets_two_type_words_whatever_its_relation(nlp: object) -> None:
    phrases = entity_type_phrases(SAMPLES, nlp)
    assert phrases[0] == "Barack Obama Berlin person location"
    assert phrases[1] == "Berlin Barack Obama location person"  # a None sample gets its types too
    assert phrases[2] == "Tim Cook Apple person organization"
    assert phrases[3] == "cat dog misc misc"


def test_cli_writes_tmr_keyed_phrases_per_split(tmp_path: Path) -> None:
    for split in ("train", "val"):
        write_samples(SAMPLES, tmp_path / f"mnre_{split}.txt", fmt="mnre")
    result = CliRunner().invoke(
        app,
        [
            "data",
            "phrases",
            "--data",
            str(tmp_path / "mnre_train.txt"),
            "--data",
            str(tmp_path / "mnre_val.txt"),
            "--out",
            str(tmp_path / "types_{split}.json"),
        ],
    )
    assert result.exit_code == 0, result.output
    written = json.loads((tmp_path / "types_val.json").read_text())
    assert list(written) == ["0", "1", "2", "3"] and written["3"] == "cat dog misc misc"
    from pgmre.data.mnre import load_samples

    val = load_samples(tmp_path / "mnre_val.txt")
    assert phrases_for(val, str(tmp_path / "types_{split}.json"), "dev")[0].endswith("person location")
    clash = CliRunner().invoke(
        app,
        [
            "data",
            "phrases",
            "--data",
            str(tmp_path / "mnre_val.txt"),
            "--out",
            str(tmp_path / "mnre_val.txt"),
        ],
    )
    assert clash.exit_code == 2 and "overwrite the input" in clash.output
