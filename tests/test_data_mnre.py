"""MNRE reader: both encodings, every validation rule in strict and lenient mode, writing back."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pgmre.data.mnre import DataError, detect_format, load_samples, read_samples, write_samples
from pgmre.data.types import Entity, Sample
from pgmre.labels import RelationVocab


def good_record(**changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "token": ["RT", "@x", ":", "Ada", "Lovelace", "visits", "London", "today"],
        "h": {"name": "Ada Lovelace", "pos": [3, 5]},
        "t": {"name": "London", "pos": [6, 7]},
        "img_id": "a.jpg",
        "relation": "/per/loc/place_of_residence",
    }
    record.update(changes)
    return record


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_reads_original_format_with_source_and_blank_lines(tmp_path: Path, mnre_vocab: RelationVocab) -> None:
    other = good_record(img_id="b.jpg", relation="None", t={"name": "today", "pos": [7, 8]})
    path = write_lines(tmp_path / "train.txt", [repr(good_record()), "", "   ", repr(other)])
    samples = load_samples(path, mnre_vocab)
    assert [s.relation for s in samples] == ["/per/loc/place_of_residence", "None"]
    first = samples[0]
    assert first.tokens[3:5] == ("Ada", "Lovelace")
    assert first.head == Entity("Ada Lovelace", 3, 5)
    assert first.tail == Entity("London", 6, 7)
    assert first.img_id == "a.jpg"
    assert first.source == (str(path), 1)
    assert samples[1].source == (str(path), 4)
    assert samples[1].where == f"{path}:4"  # what error messages point at
    assert Sample(first.tokens, first.head, first.tail).where == "(no source)"


def test_jsonl_by_extension_and_by_content(tmp_path: Path) -> None:
    line = json.dumps(good_record())
    by_ext = write_lines(tmp_path / "data.jsonl", [line])
    by_content = write_lines(tmp_path / "data.txt", [line])
    assert read_samples(by_ext).format == "jsonl"
    assert read_samples(by_content).format == "jsonl"
    assert load_samples(by_ext) == load_samples(by_content)
    assert detect_format("x.txt", repr(good_record())) == "mnre"


def test_json_lines_in_an_mnre_file_keep_their_escapes(tmp_path: Path) -> None:
    """A JSON line is also a Python literal, with other escapes: read as JSON, it keeps its text."""
    emoji = good_record(
        token=["Ada", "\U0001f600", "London"],
        h={"name": "Ada", "pos": [0, 1]},
        t={"name": "London", "pos": [2, 3]},
    )
    slash = good_record(
        token=["AC/DC", "in", "London"],
        h={"name": "AC/DC", "pos": [0, 1]},
        t={"name": "London", "pos": [2, 3]},
    )
    escaped = json.dumps(slash).replace("/", "\\/")  # JSON may escape a slash
    assert "\\ud83d" in json.dumps(emoji) and "AC\\/DC" in escaped
    path = write_lines(tmp_path / "mixed.txt", [repr(good_record()), json.dumps(emoji), escaped])
    result = read_samples(path)
    assert result.format == "mnre" and len(result.samples) == 3, result.errors
    assert result.samples[1].tokens[1] == "\U0001f600"
    assert result.samples[2].head.name == "AC/DC" and result.samples[2].tokens[0] == "AC/DC"


def test_never_evaluates_code(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = write_lines(tmp_path / "evil.txt", [f"__import__('pathlib').Path({str(marker)!r}).touch()"])
    with pytest.raises(DataError, match="unparseable"):
        load_samples(path)
    assert not marker.exists()


BAD_RECORDS: list[tuple[str, Any, str, str]] = [
    # (kind, record or raw line, field, substring of the message)
    ("unparseable", "{'token': ['a'", "(record)", "not a Python-literal dict"),
    ("wrong_type", "['not', 'a', 'dict']", "(record)", "expected a dict"),
    ("missing_field", {k: v for k, v in good_record().items() if k != "token"}, "token", "missing"),
    ("missing_field", {k: v for k, v in good_record().items() if k != "t"}, "t", "missing"),
    ("missing_field", good_record(h={"pos": [3, 5]}), "h.name", "missing"),
    ("missing_field", good_record(h={"name": "Ada Lovelace"}), "h.pos", "missing"),
    ("missing_field", {k: v for k, v in good_record().items() if k != "relation"}, "relation", "missing"),
    ("missing_field", {k: v for k, v in good_record().items() if k != "img_id"}, "img_id", "missing"),
    ("wrong_type", good_record(token="Ada Lovelace"), "token", "list of strings"),
    ("wrong_type", good_record(token=["Ada", 3]), "token[1]", "expected a string"),
    ("wrong_type", good_record(h={"name": "Ada", "pos": ["3", 5]}), "h.pos", "[start, end] integers"),
    ("wrong_type", good_record(h={"name": "Ada", "pos": [3, 4, 5]}), "h.pos", "[start, end] integers"),
    ("wrong_type", good_record(t={"name": 7, "pos": [6, 7]}), "t.name", "expected a string"),
    ("wrong_type", good_record(relation=3), "relation", "expected a string"),
    ("wrong_type", good_record(img_id=""), "img_id", "non-empty string"),
    ("empty_tokens", good_record(token=[]), "token", "empty"),
    (
        "empty_tokens",
        good_record(token=["Ada", " ", "Lovelace", "visits", "London", "x", "y", "z"]),
        "token[1]",
        "whitespace",
    ),
    ("bad_span", good_record(t={"name": "London", "pos": [6, 9]}), "t.pos", "outside the 8 tokens"),
    ("bad_span", good_record(t={"name": "London", "pos": [6, 6]}), "t.pos", "empty"),
    ("bad_span", good_record(h={"name": "Ada", "pos": [-1, 4]}), "h.pos", "outside"),
    (
        "name_mismatch",
        good_record(h={"name": "Ada", "pos": [3, 5]}),
        "h.name",
        "not the span text 'Ada Lovelace'",
    ),
    ("name_mismatch", good_record(t={"name": "london", "pos": [6, 7]}), "t.name", "'london'"),
    ("unknown_relation", good_record(relation="/per/loc/lives_on_mars"), "relation", "lives_on_mars"),
]


@pytest.mark.parametrize(("kind", "record", "field", "message"), BAD_RECORDS)
def test_each_invalid_record_kind_strict_and_lenient(
    tmp_path: Path, mnre_vocab: RelationVocab, kind: str, record: Any, field: str, message: str
) -> None:
    bad_line = record if isinstance(record, str) else repr(record)
    path = write_lines(
        tmp_path / "data.txt", [repr(good_record()), bad_line, repr(good_record(img_id="c.jpg"))]
    )

    with pytest.raises(DataError) as info:
        load_samples(path, mnre_vocab)
    issue = info.value.issue
    assert issue is not None
    assert (issue.file, issue.line, issue.kind, issue.field) == (str(path), 2, kind, field)
    assert message in issue.message
    text = str(info.value)
    assert f"{path}:2" in text and field in text

    result = read_samples(path, mnre_vocab, strict=False)
    assert [s.img_id for s in result.samples] == ["a.jpg", "c.jpg"]
    assert result.error_counts() == {kind: 1}
    assert not result.ok


def test_duplicate_with_other_relation_is_an_error_and_repeat_is_a_warning(tmp_path: Path) -> None:
    lines = [repr(good_record()), repr(good_record()), repr(good_record(relation="None"))]
    path = write_lines(tmp_path / "dup.txt", lines)
    with pytest.raises(DataError, match="line 1") as info:
        load_samples(path)
    assert info.value.issue is not None and info.value.issue.kind == "duplicate"
    assert info.value.issue.line == 3

    result = read_samples(path, strict=False)
    assert len(result.samples) == 2  # an exact repeat is kept: nothing is silently dropped
    assert result.warning_counts() == {"repeated_record": 1}
    assert result.error_counts() == {"duplicate": 1}


def test_whitespace_only_name_difference_is_accepted_with_a_warning(tmp_path: Path) -> None:
    record = good_record(h={"name": "AdaLovelace", "pos": [3, 5]}, extra=1)
    path = write_lines(tmp_path / "spacing.txt", [repr(record)])
    result = read_samples(path)
    assert result.samples[0].head.name == "AdaLovelace"  # kept as written
    assert result.warning_counts() == {"name_spacing": 1, "extra_field": 1}
    assert result.ok


def test_unlabelled_and_imageless_records_need_the_flags(tmp_path: Path) -> None:
    record = {k: v for k, v in good_record().items() if k not in ("relation", "img_id")}
    path = write_lines(
        tmp_path / "unlabelled.jsonl", [json.dumps(record), json.dumps({**record, "relation": None})]
    )
    with pytest.raises(DataError, match="img_id"):
        load_samples(path, require_relation=False)
    samples = load_samples(path, require_relation=False, require_image=False)
    assert [(s.relation, s.img_id) for s in samples] == [(None, None), (None, None)]
    with pytest.raises(DataError, match="relation"):
        load_samples(path, require_image=False)


def test_without_vocab_any_relation_name_is_accepted(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "custom.txt", [repr(good_record(relation="lives_in"))])
    assert load_samples(path)[0].relation == "lives_in"


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"\xff\xfe{\n", "not UTF-8"), (b'[{"token": ["a"]}]\n', "JSON array")],
)
def test_unreadable_files(tmp_path: Path, content: bytes | None, message: str) -> None:
    path = tmp_path / "data.json"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_samples(path)


def test_write_round_trips_byte_for_byte_in_both_formats(tmp_path: Path) -> None:
    original = [
        repr(good_record()),
        repr(
            good_record(
                img_id="b.jpg",
                token=["It", "'s", "Ada", "Lovelace", "in", "London", "!", "x"],
                h={"name": "Ada Lovelace", "pos": [2, 4]},
                t={"name": "London", "pos": [5, 6]},
            )
        ),
    ]
    src = write_lines(tmp_path / "src.txt", original)
    samples = load_samples(src)
    out_txt = write_samples(samples, tmp_path / "out" / "copy.txt")
    assert out_txt.read_text() == src.read_text()
    out_jsonl = write_samples(samples, tmp_path / "copy.jsonl")
    assert json.loads(out_jsonl.read_text().splitlines()[0]) == good_record()
    assert load_samples(out_jsonl) == samples
    unlabelled = Sample(("a", "b"), Entity("a", 0, 1), Entity("b", 1, 2))
    out = write_samples([unlabelled], tmp_path / "u.txt")
    assert (
        out.read_text()
        == "{'token': ['a', 'b'], 'h': {'name': 'a', 'pos': [0, 1]}, 't': {'name': 'b', 'pos': [1, 2]}}\n"
    )
    assert not list(tmp_path.glob(".*.tmp"))
