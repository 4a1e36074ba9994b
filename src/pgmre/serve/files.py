"""``pgmre predict``'s work: a file of posts in, a JSONL file of predictions out, bad lines reported.

Two input formats, told apart by the first non-blank line: MNRE records (original or JSONL; ``img_id``
is looked up in the run's image directory / caption files, as in ``pgmre evaluate``) or simple JSONL
objects ``{"text", "head", "tail", "image"?, "caption"?, "explanations"?}`` where ``image`` is a file
path relative to the input file. A line that cannot be predicted is reported (``file:line: why``) and
skipped; every other line gets one output record carrying its line number.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from tqdm.auto import tqdm

from pgmre.data.mnre import DataError, read_samples
from pgmre.serve.inputs import InputError
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
    """``simple`` when the first non-blank line is a JSON object with ``text``; otherwise ``mnre``."""
    try:
        with path.open(encoding="utf-8-sig") as handle:
            for line in handle:
                if line.strip():
                    try:
                        first = json.loads(line)
                    except ValueError:
                        return "mnre"
                    return "simple" if isinstance(first, dict) and "text" in first else "mnre"
    except UnicodeDecodeError as err:
        raise DataError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise DataError(f"{path}: cannot read: {err.strerror or err}") from None
    raise DataError(f"{path}: no input lines")


def _simple_lines(path: Path, predictor: Predictor) -> Iterator[Line]:
    with path.open(encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
                if not isinstance(record, dict):
                    raise InputError(f"expected a JSON object, got {type(record).__name__}")
                image = record.get("image")
                if image is not None:
                    if not isinstance(image, str) or not image.strip():
                        raise InputError("image: expected a file path (relative to the input file)")
                    record["image"] = path.parent / image
                yield Line(number, predictor.prepare(PostInput.from_mapping(record)))
            except json.JSONDecodeError as err:
                yield Line(number, error=f"not a JSON object: {err}")
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
    with path.open("rb") as handle:
        return sum(1 for raw in handle if raw.strip())


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 32,
    top_k: int = 3,
    progress: bool = True,
    on_error: Callable[[str], None] | None = None,
) -> PredictSummary:
    """Predict every line of ``input_path`` into ``output_path`` (written atomically)."""
    from pgmre.explain import ExplanationsMissing

    source, target = Path(input_path), Path(output_path)
    fmt = detect_input_format(source)
    summary = PredictSummary(str(source), str(target), fmt)
    started = time.perf_counter()
    lines = _simple_lines(source, predictor) if fmt == "simple" else _mnre_lines(source, predictor)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")

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
        except ExplanationsMissing:
            if len(batch) == 1:
                skip(batch[0], "no entity explanation from the run's backends (add 'explanations')")
                return
            for line in batch:  # find the line(s) without explanations; predict the others
                flush([line], out)
            return
        for line, pred in zip(batch, preds, strict=True):
            out.write(json.dumps({"line": line.number, **pred.to_dict()}, ensure_ascii=False) + "\n")
            summary.predicted += 1

    try:
        with (
            os.fdopen(fd, "w", encoding="utf-8") as out,
            tqdm(total=_count_lines(source), desc="predict", unit="line", disable=not progress) as bar,
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
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    summary.seconds = round(time.perf_counter() - started, 3)
    return summary
