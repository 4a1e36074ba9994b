"""``pgmre predict``'s work: a file of posts in, a JSONL file of predictions out, bad lines reported.

Two input formats, told apart by the first non-blank line: MNRE records (original or JSONL; ``img_id``
is looked up in the run's image directory / caption files, as in ``pgmre evaluate``) or simple JSONL
objects ``{"text", "head", "tail", "image"?, "caption"?, "explanations"?}`` where ``image`` is a file
path relative to the input file. A line that cannot be predicted is reported (``file:line: why``) and
skipped; every other line gets one output record carrying its line number. An MNRE line whose image
(or caption) is missing follows the run's ``visual.missing``, as in ``pgmre evaluate``: ``error``
reports and skips the line, ``blank`` predicts it with blank visual slots.
"""

from __future__ import annotations

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


def detect_input_format(path: Path) -> InputFormat:
    """``simple`` when the first line holding a record is a JSON object with ``text``; otherwise ``mnre``.

    Lines that hold no record (garbage, a bare number, not UTF-8) decide nothing, so a bad first line
    cannot turn every good line into an error."""
    lines = False
    for _, line in text_lines(path):
        if isinstance(line, UnicodeDecodeError) or not line.strip():
            lines = lines or isinstance(line, UnicodeDecodeError)
            continue
        lines = True
        for parse in (parse_json, parse_literal):
            try:
                record = parse(line)
            except ParseError:
                continue
            if isinstance(record, dict):  # a JSON object: simple posts or JSONL records; else MNRE's format
                return "simple" if parse is parse_json and "text" in record else "mnre"
    if not lines:
        raise DataError(f"{path}: no input lines")
    return "mnre"


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


def _simple_lines(path: Path, predictor: Predictor) -> Iterator[Line]:
    for number, text in text_lines(path):
        if isinstance(text, UnicodeDecodeError):
            yield Line(number, error=not_utf8(text))
        elif text.strip():
            try:
                yield Line(number, _simple_line(text, path, predictor))
            except InputError as err:
                yield Line(number, error=str(err))


def _mnre_lines(path: Path, predictor: Predictor) -> Iterator[Line]:
    result = read_samples(
        path, predictor.pipeline.vocab, strict=False, require_relation=False, require_image=False
    )
    lines = [Line(issue.line, error=f"field {issue.field!r}: {issue.message}") for issue in result.errors]
    for sample in result.samples:
        extra: dict[str, Any] = {"img_id": sample.img_id}
        if sample.relation is not None:
            extra["gold"] = sample.relation
        lines.append(Line(sample.source[1] if sample.source else 0, PreparedInput(sample), extra=extra))
    yield from sorted(lines, key=lambda line: line.number)


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
    fmt = detect_input_format(source)
    summary = PredictSummary(str(source), str(target), fmt)
    started = time.perf_counter()
    lines = _simple_lines(source, predictor) if fmt == "simple" else _mnre_lines(source, predictor)

    def skip(line: Line, why: str) -> None:
        message = f"{source}:{line.number}: {why}"
        summary.skipped += 1
        summary.errors.append(message)
        if on_error is not None:
            on_error(message)

    def flush(batch: list[Line], out: Any) -> None:
        try:
            preds = predictor.predict_prepared(
                [ln.prepared for ln in batch if ln.prepared], top_k, batch_size, [ln.extra for ln in batch]
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
            for line in batch:  # find the line(s) that cannot be predicted; predict the others
                flush([line], out)
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
