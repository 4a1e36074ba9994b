"""``pgmre predict``'s work: a file of posts in, a JSONL file of predictions out, bad lines reported.

Two input formats: MNRE records (original or JSONL; ``img_id`` is looked up in the run's image
directory / caption files, as in ``pgmre evaluate``) and simple JSONL objects ``{"text", "head", "tail",
"image"?, "caption"?, "explanations"?}`` where ``image`` is a file path relative to the input file. Each
line is read as what it holds (a ``text`` object is a post, a ``token`` one a record); a line that holds
neither is reported by the reader of the file's main format. A line that cannot be predicted is reported
(``file:line: why``) and skipped; every other line gets one output record carrying its line number. An MNRE line whose image
(or caption) is missing follows the run's ``visual.missing``, as in ``pgmre evaluate``: ``error``
reports and skips the line, ``blank`` predicts it with blank visual slots.
"""

from __future__ import annotations

import heapq
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pgmre.data.mnre import DataError, not_utf8, read_samples, text_lines
from pgmre.data.parsing import ParseError, parse_json, parse_literal
from pgmre.encoders.missing import MissingInputError
from pgmre.outputs import atomic_write, check_output_file
from pgmre.progress import progress_bar
from pgmre.serve.inputs import InputError, check_text
from pgmre.serve.predictor import PostInput, Predictor, PreparedInput

InputFormat = Literal["mnre", "simple"]


@dataclass
class Line:
    """One input line: prepared for the model, or the reason it cannot be."""

    number: int
    prepared: PreparedInput | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class PredictSummary:
    input: str
    output: str
    format: InputFormat
    predicted: int = 0
    skipped: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "errors"}


def _kind(text: str) -> InputFormat | None:
    """What one line holds: a post (a JSON object with ``text``), a record (``token``), or neither."""
    for parse in (parse_json, parse_literal):
        try:
            record = parse(text)
        except ParseError:
            continue
        if isinstance(record, dict) and "text" in record and parse is parse_json:
            return "simple"
        if isinstance(record, dict) and "token" in record:
            return "mnre"
        return None
    return None


def line_kinds(path: Path) -> tuple[InputFormat, dict[int, InputFormat]]:
    """The file's main format (the kind most lines hold; MNRE when none holds a post or a record) and the
    reader of every non-blank line: its own kind, or the main format for a line that holds neither.

    So a bad line, first or not, never turns the good lines of the other kind into errors."""
    kinds: dict[int, InputFormat | None] = {}
    for number, line in text_lines(path):
        if isinstance(line, UnicodeDecodeError):
            kinds[number] = None
        elif line.strip():
            kinds[number] = _kind(line)
    if not kinds:
        raise DataError(f"{path}: no input lines")
    found = [kind for kind in kinds.values() if kind is not None]
    simple, mnre = found.count("simple"), found.count("mnre")
    main: InputFormat = found[0] if found and simple == mnre else "simple" if simple > mnre else "mnre"
    return main, {number: kind or main for number, kind in kinds.items()}


def _simple_line(text: str, path: Path, predictor: Predictor) -> PreparedInput:
    """One ``{"text", "head", "tail", ...}`` line, validated; :class:`InputError` says what is wrong."""
    try:
        record = parse_json(text)
    except ParseError as err:
        raise InputError(f"not a JSON object: {err}") from None
    if not isinstance(record, dict):
        raise InputError(f"expected a JSON object, got {type(record).__name__}")
    image = record.get("image")
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise InputError("image: expected a file path (relative to the input file)")
        record["image"] = path.parent / check_text(image, "image")
    return predictor.prepare(PostInput.from_mapping(record))


def _simple_lines(path: Path, predictor: Predictor, numbers: set[int]) -> Iterator[Line]:
    for number, text in text_lines(path):
        if number not in numbers:
            continue
        if isinstance(text, UnicodeDecodeError):
            yield Line(number, error=not_utf8(text))
        elif text.strip():
            try:
                yield Line(number, _simple_line(text, path, predictor))
            except InputError as err:
                yield Line(number, error=str(err))


def _mnre_lines(path: Path, predictor: Predictor, numbers: set[int]) -> list[Line]:
    """The MNRE records among ``numbers``, read and validated as ``evaluate`` reads them."""
    result = read_samples(
        path, predictor.pipeline.vocab, strict=False, require_relation=False, require_image=False
    )
    lines = [Line(issue.line, error=f"field {issue.field!r}: {issue.message}") for issue in result.errors]
    for sample in result.samples:
        extra: dict[str, Any] = {"img_id": sample.img_id}
        if sample.relation is not None:
            extra["gold"] = sample.relation
        lines.append(Line(sample.source[1] if sample.source else 0, PreparedInput(sample), extra=extra))
    return [line for line in lines if line.number in numbers]


def _input_lines(path: Path, predictor: Predictor, kinds: dict[int, InputFormat]) -> Iterator[Line]:
    """Every non-blank line in file order, each through the reader of its kind."""
    mnre = {number for number, kind in kinds.items() if kind == "mnre"}
    records = sorted(_mnre_lines(path, predictor, mnre) if mnre else [], key=lambda line: line.number)
    posts = _simple_lines(path, predictor, set(kinds) - mnre)  # lazily: images are read line by line
    yield from heapq.merge(records, posts, key=lambda line: line.number)


def _count_lines(path: Path) -> int:
    return sum(1 for _, line in text_lines(path) if isinstance(line, UnicodeDecodeError) or line.strip())


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 32,
    top_k: int = 3,
    progress: bool = True,
    on_error: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Predict every line of ``input_path`` into ``output_path`` (written atomically).

    ``output_path`` is checked first (:class:`~pgmre.outputs.OutputPathError` when it is a directory or
    the input). A line that cannot be predicted (invalid, no explanation, a missing image under
    ``visual.missing=error``) is reported through ``on_error`` and skipped; the others are all written.
    """
    from pgmre.explain import ExplanationsMissing

    source = Path(input_path)
    target = check_output_file(output_path, [source])
    fmt, kinds = line_kinds(source)
    summary = PredictSummary(str(source), str(target), fmt)
    started = time.perf_counter()
    lines = _input_lines(source, predictor, kinds)

    def skip(line: Line, why: str) -> None:
        message = f"{source}:{line.number}: {why}"
        summary.skipped += 1
        summary.errors.append(message)
        if on_error is not None:
            on_error(message)

    def flush(batch: list[Line], out: Any, generate: bool = True) -> None:
        try:
            preds = predictor.predict_prepared(
                [ln.prepared for ln in batch if ln.prepared],
                top_k,
                batch_size,
                [ln.extra for ln in batch],
                generate=generate,
            )
        except (ExplanationsMissing, MissingInputError) as err:
            if len(batch) == 1:
                why = (
                    "no entity explanation from the run's backends (add 'explanations')"
                    if isinstance(err, ExplanationsMissing)
                    else " ".join(str(err).split())  # the missing image/caption and visual.missing
                )
                skip(batch[0], why)
                return
            # find the line(s) that cannot be predicted; predict the others, with the explanations the
            # batch just got (asking the backends again per line would wait out their retries per line)
            for line in batch:
                flush([line], out, generate and not isinstance(err, ExplanationsMissing))
            return
        for line, pred in zip(batch, preds, strict=True):
            out.write(json.dumps({"line": line.number, **pred.to_dict()}, ensure_ascii=False) + "\n")
            summary.predicted += 1

    with (
        atomic_write(target) as out,
        progress_bar(total=_count_lines(source), desc="predict", unit="line", enabled=progress) as bar,
    ):
        batch: list[Line] = []
        for line in lines:
            if line.prepared is None:
                skip(line, line.error or "invalid")
            else:
                batch.append(line)
            if len(batch) >= batch_size:
                flush(batch, out)
                bar.update(len(batch))
                batch = []
            if line.prepared is None:
                bar.update(1)
        if batch:
            flush(batch, out)
            bar.update(len(batch))
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary
