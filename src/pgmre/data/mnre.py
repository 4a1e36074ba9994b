"""Read, validate and write MNRE-format files.

Two encodings of the same record are accepted: MNRE's original one (a Python-literal dict per line,
parsed with :func:`ast.literal_eval`, never ``eval``) and JSON Lines. Every record is validated; a bad one
is reported with file, line, field and what is wrong. Nothing is ever repaired: a record is either
read exactly as written or reported. The rules are documented in ``docs/data.md``.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pgmre.data.parsing import ParseError, parse_json, parse_literal, shown, text_problem
from pgmre.data.types import Entity, Sample, entity_pair_problem
from pgmre.labels import RelationVocab

Format = Literal["mnre", "jsonl"]

#: Errors make a record invalid (strict mode raises on the first; lenient mode skips the record).
ERROR_KINDS = (
    "unparseable",  # the line is not a Python-literal / JSON object
    "missing_field",  # a required key is absent
    "wrong_type",  # a key holds the wrong kind of value
    "invalid_text",  # a string holds an unpaired surrogate (not valid Unicode)
    "empty_tokens",  # no tokens, or an empty / whitespace-only token
    "bad_span",  # pos is out of range or empty
    "name_mismatch",  # the entity name is not the text of its span
    "same_span",  # head and tail are the same tokens
    "unknown_relation",  # the relation is not in the given vocabulary
    "duplicate",  # the same (tokens, head, tail, image) was already read with a different relation
)
#: Warnings never reject a record; they are counted so that nothing passes unnoticed.
WARNING_KINDS = (
    "repeated_record",  # the exact same record (relation included) was already read
    "name_spacing",  # the name matches its span only when whitespace is ignored
    "extra_field",  # keys other than token, h, t, img_id, relation (they are not kept)
)

KNOWN_FIELDS = ("token", "h", "t", "img_id", "relation")
JSONL_SUFFIXES = (".jsonl", ".json")
_WHITESPACE = re.compile(r"\s+")


log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecordIssue:
    """One problem with one record: where it is, which field, what kind, and a sentence saying what."""

    file: str
    line: int
    field: str
    kind: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: field {self.field!r}: {self.message} [{self.kind}]"


class DataError(ValueError):
    """An input file that is unreadable or holds an invalid record (strict mode: the first one)."""

    def __init__(self, message: str, issue: RecordIssue | None = None) -> None:
        super().__init__(message)
        self.issue = issue


@dataclass
class ReadResult:
    """What a lenient read produced: the valid samples, the rejected records and the warnings."""

    samples: list[Sample]
    errors: list[RecordIssue] = field(default_factory=list)
    warnings: list[RecordIssue] = field(default_factory=list)
    format: Format = "mnre"

    @property
    def ok(self) -> bool:
        return not self.errors

    def error_counts(self) -> dict[str, int]:
        return dict(Counter(e.kind for e in self.errors))

    def warning_counts(self) -> dict[str, int]:
        return dict(Counter(w.kind for w in self.warnings))


class _Invalid(Exception):
    """Internal: one record failed one rule."""

    def __init__(self, field_name: str, kind: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.kind = kind
        self.message = message


def detect_format(path: str | Path, lines: str | Iterable[str] | None = None) -> Format:
    """``.jsonl``/``.json`` are JSON Lines; otherwise the first line holding a record decides: a JSON
    object means JSONL, a Python-literal dict MNRE. Lines that are neither (garbage, a bare number)
    decide nothing, so one bad first line cannot make every good line unreadable."""
    if Path(path).suffix.lower() in JSONL_SUFFIXES:
        return "jsonl"
    parsers: tuple[tuple[Format, Callable[[str], Any]], ...] = (
        ("jsonl", parse_json),
        ("mnre", parse_literal),
    )
    for text in [lines] if isinstance(lines, str) else lines or ():
        for fmt, parse in parsers:
            try:
                if isinstance(parse(text), dict):
                    return fmt
            except ParseError:
                pass
    return "mnre"


def _parse(text: str, fmt: Format) -> Any:
    """One line, in either encoding, so a file mixing the two (a JSON line in an MNRE file, a
    Python-literal one in a JSONL file) loses no record; the error is ``fmt``'s.

    JSON first in both: a line that is valid JSON is JSON (MNRE's ``repr`` lines never are, their keys
    being single-quoted), and read as a Python literal its escapes would change meaning (an escaped
    emoji would become two lone surrogates, an escaped slash would keep its backslash)."""
    try:
        return parse_json(text)
    except ParseError as json_err:
        try:
            return parse_literal(text)
        except ParseError as literal_err:
            err = json_err if fmt == "jsonl" else literal_err
            expected = "a JSON object" if fmt == "jsonl" else "a Python-literal dict"
            raise _Invalid("(record)", "unparseable", f"not {expected}: {err}") from None


def _text(value: str, field_name: str) -> str:
    """``value`` unchanged, or ``invalid_text`` when it cannot be encoded (see :func:`text_problem`)."""
    problem = text_problem(value)
    if problem is not None:
        raise _Invalid(field_name, "invalid_text", problem)
    return value


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _entity(record: dict[str, Any], key: str, tokens: tuple[str, ...]) -> tuple[Entity, bool]:
    """Validate ``record[key]``; returns the entity and whether it needed the whitespace-insensitive match."""
    if key not in record:
        raise _Invalid(key, "missing_field", "missing entity")
    value = record[key]
    if not isinstance(value, dict):
        raise _Invalid(
            key, "wrong_type", f"expected a dict with 'name' and 'pos', got {type(value).__name__}"
        )
    if "name" not in value:
        raise _Invalid(f"{key}.name", "missing_field", "missing entity name")
    if "pos" not in value:
        raise _Invalid(f"{key}.pos", "missing_field", "missing entity span")
    name, pos = value["name"], value["pos"]
    if not isinstance(name, str):
        raise _Invalid(f"{key}.name", "wrong_type", f"expected a string, got {type(name).__name__}")
    _text(name, f"{key}.name")
    if not isinstance(pos, list | tuple) or len(pos) != 2 or not all(_is_int(p) for p in pos):
        raise _Invalid(f"{key}.pos", "wrong_type", f"expected [start, end] integers, got {shown(pos)}")
    start, end = pos
    if not 0 <= start < end <= len(tokens):
        raise _Invalid(
            f"{key}.pos",
            "bad_span",
            f"span [{shown(start)}, {shown(end)}) is empty or outside the {len(tokens)} tokens",
        )
    span_text = " ".join(tokens[start:end])
    spacing = False
    if span_text != name:
        if _WHITESPACE.sub("", span_text) != _WHITESPACE.sub("", name):
            raise _Invalid(
                f"{key}.name",
                "name_mismatch",
                f"name {shown(name)} is not the span text {shown(span_text)}",
            )
        spacing = True
    return Entity(name, start, end), spacing


def _validate(
    record: Any,
    vocab: RelationVocab | None,
    require_relation: bool,
    require_image: bool,
    source: tuple[str, int],
) -> tuple[Sample, list[tuple[str, str, str]]]:
    """One record -> Sample plus (field, kind, message) warnings; raises _Invalid on the first rule broken."""
    if isinstance(record, list):
        raise _Invalid(
            "(record)",
            "wrong_type",
            "expected a dict, got list (a JSON array is not supported: one record per line)",
        )
    if not isinstance(record, dict):
        raise _Invalid("(record)", "wrong_type", f"expected a dict, got {type(record).__name__}")
    warnings: list[tuple[str, str, str]] = []
    extra = sorted(shown(k) if not isinstance(k, str) else k for k in record if k not in KNOWN_FIELDS)
    if extra:
        warnings.append((extra[0], "extra_field", f"unknown keys {extra} are ignored"))

    if "token" not in record:
        raise _Invalid("token", "missing_field", "missing token list")
    raw_tokens = record["token"]
    if not isinstance(raw_tokens, list | tuple):
        raise _Invalid("token", "wrong_type", f"expected a list of strings, got {type(raw_tokens).__name__}")
    if not raw_tokens:
        raise _Invalid("token", "empty_tokens", "the token list is empty")
    for i, tok in enumerate(raw_tokens):
        if not isinstance(tok, str):
            raise _Invalid(f"token[{i}]", "wrong_type", f"expected a string, got {type(tok).__name__}")
        if not tok.strip():
            raise _Invalid(f"token[{i}]", "empty_tokens", f"token {i} is empty or only whitespace ({tok!r})")
        _text(tok, f"token[{i}]")
    tokens = tuple(raw_tokens)

    head, head_spacing = _entity(record, "h", tokens)
    tail, tail_spacing = _entity(record, "t", tokens)
    pair_problem = entity_pair_problem(head, tail)
    if pair_problem is not None:
        raise _Invalid("t.pos", "same_span", pair_problem)
    for key, used in (("h", head_spacing), ("t", tail_spacing)):
        if used:
            warnings.append((f"{key}.name", "name_spacing", "name matches its span only ignoring whitespace"))

    img_id = record.get("img_id")
    if img_id is None:
        if require_image:
            raise _Invalid("img_id", "missing_field", "missing image id")
    elif not isinstance(img_id, str) or not img_id.strip():
        raise _Invalid("img_id", "wrong_type", f"expected a non-empty string, got {shown(img_id)}")
    else:
        _text(img_id, "img_id")

    relation = record.get("relation")
    if relation is None:
        if require_relation:
            raise _Invalid("relation", "missing_field", "missing relation (use 'None' for no relation)")
    elif not isinstance(relation, str):
        raise _Invalid("relation", "wrong_type", f"expected a string, got {type(relation).__name__}")
    elif vocab is not None and relation not in vocab:
        raise _Invalid("relation", "unknown_relation", f"unknown relation {shown(relation)}")
    else:
        _text(relation, "relation")

    return Sample(tokens, head, tail, img_id, relation, source), warnings


def text_lines(path: str | Path) -> Iterator[tuple[int, str | UnicodeDecodeError]]:
    """``(line number, text)`` of every line, decoded one by one (a UTF-8 BOM is dropped), so a line that
    is not UTF-8 is that line's problem (its ``UnicodeDecodeError`` in place of the text), not the
    file's. A file that cannot be read at all raises :class:`DataError`."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            for lineno, raw in enumerate(handle, start=1):
                try:
                    yield lineno, raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as err:
                    yield lineno, err
    except FileNotFoundError:
        raise DataError(f"{path}: cannot read: no such file") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a directory, expected an MNRE or JSONL file") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror}") from None


def not_utf8(err: UnicodeDecodeError) -> str:
    """The message for a line that is not UTF-8 text."""
    return f"not UTF-8 text ({err.reason} at byte {err.start} of the line)"


def _sample_key(sample: Sample) -> tuple[Any, ...]:
    return (sample.tokens, sample.head, sample.tail, sample.img_id)


def read_samples(
    path: str | Path,
    vocab: RelationVocab | None = None,
    strict: bool = True,
    require_relation: bool = True,
    require_image: bool = True,
) -> ReadResult:
    """Read and validate every record of ``path``.

    ``vocab``: when given, relations must belong to it. ``strict``: raise :class:`DataError` on the first
    invalid record; otherwise skip it and record it in ``errors``. ``require_relation=False`` accepts
    unlabelled records (``Sample.relation`` is then ``None``); ``require_image=False`` accepts records
    without ``img_id``. Blank lines are skipped.
    """
    path = Path(path)
    name = str(path)
    result = ReadResult(samples=[])
    seen: dict[tuple[Any, ...], tuple[int, str | None]] = {}
    numbered = [
        (lineno, line if isinstance(line, UnicodeDecodeError) else line.strip())
        for lineno, line in text_lines(path)
        if isinstance(line, UnicodeDecodeError) or line.strip()
    ]
    fmt = result.format = detect_format(path, (text for _, text in numbered if isinstance(text, str)))
    for lineno, text in numbered:
        try:
            if isinstance(text, UnicodeDecodeError):
                raise _Invalid("(record)", "unparseable", not_utf8(text))
            record = _parse(text, fmt)
            sample, warnings = _validate(record, vocab, require_relation, require_image, (name, lineno))
            key = _sample_key(sample)
            if key in seen:
                first_line, first_relation = seen[key]
                if first_relation != sample.relation:
                    raise _Invalid(
                        "relation",
                        "duplicate",
                        f"same tokens, entities and image as line {first_line} but relation "
                        f"{shown(sample.relation)} instead of {shown(first_relation)}",
                    )
                warnings.append(("(record)", "repeated_record", f"repeats line {first_line} exactly"))
            else:
                seen[key] = (lineno, sample.relation)
        except _Invalid as bad:
            issue = RecordIssue(name, lineno, bad.field, bad.kind, bad.message)
            if strict:
                raise DataError(str(issue), issue) from None
            result.errors.append(issue)
            continue
        result.warnings.extend(RecordIssue(name, lineno, f, k, m) for f, k, m in warnings)
        result.samples.append(sample)
    return result


def load_samples(
    path: str | Path,
    vocab: RelationVocab | None = None,
    strict: bool = True,
    require_relation: bool = True,
    require_image: bool = True,
) -> list[Sample]:
    """The valid samples of ``path`` (see :func:`read_samples`); strict by default."""
    return read_samples(path, vocab, strict, require_relation, require_image).samples


def format_record(sample: Sample, fmt: Format = "mnre") -> str:
    """One line (without newline): MNRE's ``repr`` of the dict, or compact JSON."""
    record = sample.to_dict()
    return json.dumps(record, ensure_ascii=False) if fmt == "jsonl" else repr(record)


def write_samples(samples: Iterable[Sample], path: str | Path, fmt: Format | None = None) -> Path:
    """Write samples atomically; ``.jsonl``/``.json`` give JSON Lines, anything else MNRE's format.

    MNRE's format is ``repr`` of the record dict, so re-writing a file read from MNRE reproduces it.
    """
    from pgmre.outputs import atomic_write

    path = Path(path)
    fmt = fmt or detect_format(path)
    with atomic_write(path) as handle:
        for sample in samples:
            handle.write(format_record(sample, fmt) + "\n")
    return path


def load_split(path: str | Path, vocab: RelationVocab | None, strict: bool) -> list[Sample]:
    """Strict: stop at the first invalid record. Lenient: skip invalid records, and say how many."""
    if strict:
        return load_samples(path, vocab, strict=True)
    result = read_samples(path, vocab, strict=False)
    if result.errors:
        log.warning(
            "%s: skipped %d invalid records %s (data.strict=false)",
            path,
            len(result.errors),
            result.error_counts(),
        )
    return result.samples
