"""``pgmre predict``'s work: a file of posts in, a JSONL file of predictions out, bad lines reported.

Two input formats: MNRE records (original or JSONL; ``img_id`` is looked up in the run's image
directory / caption files, as in ``pgmre evaluate``) and simple JSONL objects ``{"text", "head", "tail",
"image"?, "caption"?, "explanations"?}`` where ``image`` is a file path relative to the input file. Each
line is read as what it holds (a ``text`` object is a post, a ``token`` one a record); a line that holds
neither is reported by the reader of the file's main format. A line that cannot be predicted is reported
(``file:line: why``) and skipped; every other line gets one output record carrying its line number. An MNRE line whose image
(or caption) is missing follows the run's ``visual.missing``, as in ``pgmre evaluate``: ``error``
reports and skips the line, ``blank`` predicts it with blank visual slots.

Progress is kept as the job goes, next to the output: ``<out>.partial`` (the output records, appended
batch by batch) and ``<out>.partial.json`` (:class:`Progress`, rewritten atomically after the first batch
and then at a batch boundary at most every :data:`SAVE_EVERY_S` seconds: the input's sha256, the run,
the checkpoint's fingerprint, the precision, ``top_k``, the batch size, ``done_through_line`` and the
summary so far).
On success the sidecar is deleted, then the partial file replaces ``<out>`` (an earlier ``<out>`` is
never half-overwritten; a crash between the two leaves a partial file without progress, which the next
run overwrites). When the job stops (an error, Ctrl-C) both stay, and ``resume=True`` (``pgmre predict
--resume``) continues after ``done_through_line``: the lines after the last save are predicted (and
their bad lines reported) again, the lines up to it are not, and the final file and the summary's
counts are exactly those of an uninterrupted run. Without ``resume``, a leftover sidecar is refused
(:class:`ResumeError`): the work it holds is never discarded silently.
"""

from __future__ import annotations

import contextlib
import hashlib
import heapq
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from pgmre.data.mnre import DataError, not_utf8, read_samples, text_lines
from pgmre.data.parsing import ParseError, parse_json, parse_literal
from pgmre.encoders.missing import MissingInputError
from pgmre.outputs import check_output_file, write_text_atomic
from pgmre.progress import progress_bar
from pgmre.serve.inputs import InputError, check_text
from pgmre.serve.predictor import PostInput, Predictor, PreparedInput

InputFormat = Literal["mnre", "simple"]
PROGRESS_VERSION = 3
#: Seconds of wall time between two saves of the progress sidecar (the first batch is always saved):
#: rewriting it, every error message included, after every batch is quadratic in the bad lines.
SAVE_EVERY_S = 2.0
log = logging.getLogger(__name__)


class ResumeError(ValueError):
    """The progress of an interrupted job cannot be resumed (damaged, or another job's), or would be
    discarded by a fresh start; the message names the file and what to do. Nothing was changed."""


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


def _sha256(path: str | Path) -> str:
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def partial_paths(output_path: str | Path) -> tuple[Path, Path]:
    """``(<out>.partial, <out>.partial.json)``: the records predicted so far and the progress sidecar."""
    target = Path(output_path)
    return target.with_name(f"{target.name}.partial"), target.with_name(f"{target.name}.partial.json")


@dataclass
class Progress:
    """The sidecar ``<out>.partial.json``: what an interrupted job had done at its last save.

    Every input line numbered up to ``done_through_line`` is either one of the ``predicted`` records of
    ``<out>.partial`` or one of the ``skipped`` (reported in ``errors``)."""

    input: str  # resolved path, for the messages: the content is matched by ``input_sha256``
    input_sha256: str
    run: str | None  # resolved run directory (None for a predictor built in memory)
    checkpoint: str | None
    weights: str | None  # ``Predictor.weights_fingerprint``: the checkpoint's files as loaded
    precision: str  # ``Predictor.precision``, the effective one (fp32, bf16)
    top_k: int
    batch_size: int  # a resumed job may use another (a warning): the padding can move the last digits
    done_through_line: int
    predicted: int
    skipped: int
    errors: list[str]
    seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps({"version": PROGRESS_VERSION, **asdict(self)}, ensure_ascii=False, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Progress:
        """The sidecar's content; ``ValueError`` saying what is wrong with it."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        if data.get("version") != PROGRESS_VERSION:
            raise _OtherFormat(f"format {data.get('version')!r}, this one reads {PROGRESS_VERSION}")
        kinds: dict[str, tuple[type, ...]] = {
            "input": (str,),
            "input_sha256": (str,),
            "run": (str, type(None)),
            "checkpoint": (str, type(None)),
            "weights": (str, type(None)),
            "precision": (str,),
            "top_k": (int,),
            "batch_size": (int,),
            "done_through_line": (int,),
            "predicted": (int,),
            "skipped": (int,),
            "errors": (list,),
            "seconds": (int, float),
        }
        for f in fields(cls):
            value = data.get(f.name)
            if not isinstance(value, kinds[f.name]) or isinstance(value, bool):
                raise ValueError(f"field {f.name!r}: {value!r}")
            if isinstance(value, int) and value < 0:
                raise ValueError(f"field {f.name!r}: negative")
        if not all(isinstance(e, str) for e in data["errors"]) or len(data["errors"]) != data["skipped"]:
            raise ValueError("field 'errors': not one message per skipped line")
        return cls(**{f.name: data[f.name] for f in fields(cls)})


class _OtherFormat(ValueError):
    """A sidecar written by another version of pgmre (its fields may mean something else)."""


def _start_over(output_path: Path) -> str:
    return f"delete {output_path}.partial* to start over"


def read_progress(output_path: str | Path) -> Progress | None:
    """The progress an interrupted job left next to ``output_path``; None when there is none.

    A damaged sidecar raises :class:`ResumeError` naming it."""
    target = Path(output_path)
    _, sidecar = partial_paths(target)
    try:
        text = sidecar.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as err:
        raise ResumeError(f"{sidecar}: cannot read the progress of an interrupted run: {err}") from None
    try:
        return Progress.from_json(text)
    except _OtherFormat as err:
        raise ResumeError(
            f"{sidecar}: progress of an interrupted run written by another pgmre ({err}); "
            f"{_start_over(target)}"
        ) from None
    except (ValueError, TypeError) as err:
        raise ResumeError(
            f"{sidecar}: damaged progress file of an interrupted run ({err}); {_start_over(target)}"
        ) from None


def check_resume(
    output_path: str | Path,
    input_path: str | Path,
    run: str | Path | None,
    checkpoint: str | None,
    top_k: int,
    resume: bool,
    input_sha256: str | None = None,
    model: tuple[str | None, str] | None = None,
) -> Progress | None:
    """The progress to continue (None: start from the first line), or :class:`ResumeError`.

    Without ``resume``, leftover progress is refused (it is never discarded silently); with it, the
    progress must be of the same input content, run, checkpoint and ``top_k``, and, when ``model`` (the
    loaded predictor's ``(weights_fingerprint, precision)``) is given, of the same checkpoint files and
    precision. ``pgmre predict`` calls this before the model loads (without ``model``);
    :func:`predict_file` calls it again, with it."""
    target = Path(output_path)
    partial, sidecar = partial_paths(target)
    progress = read_progress(target)
    if progress is None:
        return None
    if not resume:
        raise ResumeError(
            f"{sidecar}: holds {progress.predicted:,} predicted lines of an interrupted run (input "
            f"{progress.input}, done through line {progress.done_through_line:,}); pass --resume to continue "
            f"it, or {_start_over(target)}"
        )
    digest = input_sha256 or _sha256(input_path)
    run_now = str(Path(run).resolve()) if run is not None else None
    mismatches = []
    if digest != progress.input_sha256:
        mismatches.append(
            f"input {progress.input} had sha256 {progress.input_sha256[:12]}, {input_path} has {digest[:12]}"
        )
    if (progress.run, progress.checkpoint) != (run_now, checkpoint):
        mismatches.append(f"run {progress.run}/{progress.checkpoint}, now {run_now}/{checkpoint}")
    if progress.top_k != top_k:
        mismatches.append(f"top_k {progress.top_k}, now {top_k}")
    if model is not None:
        weights, precision = model
        if progress.weights != weights:
            mismatches.append(
                f"the checkpoint's files changed since: fingerprint {progress.weights}, now {weights}"
            )
        if progress.precision != precision:
            mismatches.append(f"precision {progress.precision}, now {precision}")
    if mismatches:
        raise ResumeError(
            f"{sidecar}: the interrupted run does not match this one ({'; '.join(mismatches)}); resume it "
            f"with the same input, run, checkpoint (unchanged), precision and --top-k, or "
            f"{_start_over(target)}"
        )
    if not partial.is_file():
        raise ResumeError(
            f"{partial}: missing, but {sidecar} says it holds {progress.predicted:,} predicted lines; "
            f"{_start_over(target)}"
        )
    return progress


def _kept_bytes(target: Path, progress: Progress) -> int:
    """The length of ``partial``'s first ``progress.predicted`` records (every one complete, numbered
    at most ``done_through_line``, in order): what a resumed job keeps. What follows them (a
    half-written line, a batch written after the sidecar's last update) is dropped."""
    partial, _ = partial_paths(target)
    kept = last = 0
    with partial.open("rb") as handle:
        for index in range(1, progress.predicted + 1):
            raw = handle.readline()
            where = f"{partial}:{index}"
            if not raw.endswith(b"\n"):
                raise ResumeError(
                    f"{where}: holds {index - 1} complete records, the progress file says "
                    f"{progress.predicted:,}; {_start_over(target)}"
                )
            try:
                record = json.loads(raw)
                number = record["line"] if isinstance(record, dict) else None
            except (ValueError, KeyError):
                number = None
            if not isinstance(number, int) or isinstance(number, bool):
                raise ResumeError(f"{where}: damaged prediction record; {_start_over(target)}")
            if not last < number <= progress.done_through_line:
                raise ResumeError(
                    f"{where}: record of line {number} out of order (after line {last}, done through "
                    f"{progress.done_through_line}); {_start_over(target)}"
                )
            kept += len(raw)
            last = number
    return kept


def predict_file(
    predictor: Predictor,
    input_path: str | Path,
    output_path: str | Path,
    batch_size: int = 32,
    top_k: int = 3,
    progress: bool = True,
    on_error: Callable[[str], None] | None = None,
    *,
    resume: bool = False,
    save_every_s: float | None = None,
) -> PredictSummary:
    """Predict every line of ``input_path`` into ``output_path`` (replaced only once the job is done).

    ``output_path`` is checked first (:class:`~pgmre.outputs.OutputPathError` when it is a directory or
    the input). A line that cannot be predicted (invalid, no explanation, a missing image under
    ``visual.missing=error``) is reported through ``on_error`` and skipped; the others are all written.

    The records go to ``<out>.partial`` batch by batch, with the progress in ``<out>.partial.json``
    (see the module), saved after the first batch and then at most every ``save_every_s`` seconds
    (default :data:`SAVE_EVERY_S`; 0: after every batch). When the job stops on an exception (also
    ``KeyboardInterrupt``, also one raised by ``on_error``) after a save, both files stay and the
    exception gets a note saying how many lines they hold. ``resume=True`` continues such a job
    (:class:`ResumeError` when its progress is damaged or of another input content, run, checkpoint,
    checkpoint files, precision or ``top_k``; without progress it starts from the first line): the lines
    up to the last save are neither predicted nor reported again (those after it are), and the summary
    counts the whole job. Without ``resume``, leftover progress raises :class:`ResumeError`. Use the
    same ``batch_size`` to resume for a file identical to an uninterrupted run's, byte for byte (another
    one is logged as a warning).
    """
    from pgmre.explain import ExplanationsMissing

    source = Path(input_path)
    target = check_output_file(output_path, [source])
    partial, sidecar = partial_paths(target)
    for path in (partial, sidecar):
        check_output_file(path, [source])
    fmt, kinds = line_kinds(source)
    digest = _sha256(source)
    run = str(predictor.run_dir.resolve()) if predictor.run_dir is not None else None
    model = (predictor.weights_fingerprint, predictor.precision)
    saved = check_resume(target, source, run, predictor.checkpoint, top_k, resume, digest, model)
    every = SAVE_EVERY_S if save_every_s is None else save_every_s
    last_save: float | None = None  # when this job last saved (None: not yet)
    summary = PredictSummary(str(source), str(target), fmt)
    started = time.perf_counter()
    done_through, earlier_seconds = 0, 0.0
    if saved is not None:
        kept = _kept_bytes(target, saved)  # checked before anything changes
        if saved.batch_size != batch_size:
            log.warning(
                "%s: resuming with batch size %d, the interrupted run used %d: the probabilities of the "
                "lines predicted now may differ in their last digits from an uninterrupted run's "
                "(padding changes with the batch), and so, on a near tie, a label",
                sidecar,
                batch_size,
                saved.batch_size,
            )
        os.truncate(partial, kept)
        done_through, earlier_seconds = saved.done_through_line, saved.seconds
        summary.predicted, summary.skipped, summary.errors = (
            saved.predicted,
            saved.skipped,
            list(saved.errors),
        )
    already = sum(1 for number in kinds if number <= done_through)
    lines = _input_lines(source, predictor, {n: kind for n, kind in kinds.items() if n > done_through})

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

    def save(out: Any, done: int) -> Progress:
        """The batch's records on disk, then the sidecar that counts them (in this order)."""
        out.flush()
        os.fsync(out.fileno())
        state = Progress(
            input=str(source.resolve()),
            input_sha256=digest,
            run=run,
            checkpoint=predictor.checkpoint,
            weights=model[0],
            precision=model[1],
            top_k=top_k,
            batch_size=batch_size,
            done_through_line=done,
            predicted=summary.predicted,
            skipped=summary.skipped,
            errors=list(summary.errors),
            seconds=round(earlier_seconds + time.perf_counter() - started, 3),
        )
        write_text_atomic(sidecar, state.to_json())
        return state

    target.parent.mkdir(parents=True, exist_ok=True)
    out = partial.open("a" if saved is not None else "w", encoding="utf-8")
    try:
        with progress_bar(
            total=_count_lines(source), desc="predict", unit="line", enabled=progress, initial=already
        ) as bar:
            batch: list[Line] = []
            for line in lines:
                if line.prepared is None:
                    skip(line, line.error or "invalid")
                else:
                    batch.append(line)
                if len(batch) >= batch_size:
                    flush(batch, out)
                    now = time.monotonic()
                    if last_save is None or now - last_save >= every:
                        saved = save(out, line.number)  # every line consumed so far is written or skipped
                        last_save = now
                    bar.update(len(batch))
                    batch = []
                if line.prepared is None:
                    bar.update(1)
            if batch:
                flush(batch, out)
                bar.update(len(batch))
            out.flush()
            os.fsync(out.fileno())
            out.close()
        # the progress goes first: a crash before the rename leaves a partial file without progress,
        # which the next run overwrites (never a sidecar counting lines of a file already renamed)
        sidecar.unlink(missing_ok=True)
        saved = None
        os.replace(partial, target)
    except BaseException as err:
        with contextlib.suppress(OSError):  # e.g. ENOSPC flushing the buffer: the cleanup still happens
            out.close()
        if saved is None:  # no batch saved (or its progress already deleted): nothing to resume
            partial.unlink(missing_ok=True)
        else:
            err.add_note(
                f"{saved.predicted:,} predicted lines are kept in {partial}: call again with resume=True "
                "(pgmre predict --resume) to continue"
            )
        raise
    summary.seconds = round(earlier_seconds + time.perf_counter() - started, 3)
    return summary
