"""``pgmre predict`` (a file of posts -> predictions JSONL) and ``pgmre serve`` (the HTTP service)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from pgmre.cli.common import DeviceOption, PrecisionOption, fail, precision_value

if TYPE_CHECKING:
    from pgmre.serve.predictor import Predictor

RunOption = Annotated[Path, typer.Option("--run", help="run directory written by `pgmre train`")]
CheckpointOption = Annotated[str, typer.Option("--checkpoint", help="best or last")]


def _load(
    run: Path,
    checkpoint: str,
    device: str | None,
    generate_explanations: bool = True,
    precision: str | None = None,
) -> Predictor:
    """The run's predictor; a damaged run or explanation cache exits 2 naming the file and the fix."""
    from pgmre.config import ConfigError
    from pgmre.explain import CacheError
    from pgmre.runfiles import RunLoadError
    from pgmre.serve.predictor import Predictor

    try:
        return Predictor.from_pretrained(
            run, checkpoint, device, generate_explanations=generate_explanations, precision=precision
        )
    except (RunLoadError, CacheError, FileNotFoundError, ConfigError, ValueError) as err:
        fail(str(err))


def predict(
    run: RunOption,
    input_file: Annotated[
        Path,
        typer.Option("--input", help="MNRE-format file, or JSONL of {text, head, tail, image?, caption?}"),
    ],
    out: Annotated[Path, typer.Option("--out", help="predictions JSONL (one record per good input line)")],
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, help="posts per model batch")] = 32,
    top_k: Annotated[int, typer.Option("--top-k", min=1, help="relations listed per post")] = 3,
    checkpoint: CheckpointOption = "best",
    device: DeviceOption = None,
    precision: PrecisionOption = None,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="continue the interrupted run whose progress is in OUT.partial and OUT.partial.json "
            "(same input, run, checkpoint, precision and --top-k; the same --batch-size for the same bytes); "
            "without any, start from the first line",
        ),
    ] = False,
) -> None:
    """Predict relations for every line of a file; bad lines are reported (file:line: why) and skipped.

    Progress is kept in OUT.partial (+ OUT.partial.json) as the job goes (saved every few seconds); a
    job stopped by an error or Ctrl-C keeps it, and --resume continues after the last save.

    Exit status: 0 when at least one line was predicted (skipped lines are listed on stderr and counted
    in the summary), 2 when none could be, or the run or the file cannot be read, or the job stopped
    (its progress is kept), 130 when interrupted (Ctrl-C; its progress is kept).
    """
    from tqdm.auto import tqdm

    from pgmre.data.mnre import DataError
    from pgmre.explain import BackendUnavailable, CacheError
    from pgmre.outputs import OutputPathError, check_output_file
    from pgmre.serve.files import ResumeError, check_resume, partial_paths, predict_file, read_progress

    # before the model loads: nothing is lost to a bad --out, or to progress that cannot be resumed
    try:
        check_output_file(out, [input_file])
        for path in partial_paths(out):
            check_output_file(path, [input_file])
        if input_file.is_file():  # an unreadable input is reported by predict_file
            check_resume(out, input_file, run, checkpoint, top_k, resume)
    except (OutputPathError, ResumeError) as err:
        fail(str(err))
    if resume and not partial_paths(out)[1].exists():
        typer.echo(
            f"--resume: no interrupted run in {out}.partial*; predicting from the first line", err=True
        )
    predictor = _load(run, checkpoint, device, precision=precision_value(precision))

    def kept() -> str:
        """What a stopped job left: the lines --resume continues from, or nothing."""
        try:
            saved = read_progress(out)
        except ResumeError:
            saved = None
        if saved is None:
            return f"nothing was written to {out}"
        return (
            f"nothing was written to {out}; {saved.predicted:,} predicted lines are kept in "
            f"{partial_paths(out)[0]}: rerun with --resume to continue"
        )

    try:
        summary = predict_file(
            predictor,
            input_file,
            out,
            batch_size=batch_size,
            top_k=top_k,
            on_error=lambda message: tqdm.write(message, file=sys.stderr),
            resume=resume,
        )
    except ResumeError as err:
        fail(str(err))
    except (DataError, OutputPathError, CacheError, BackendUnavailable, OSError) as err:
        fail(f"{err}; {kept()}")  # OSError: an unreadable input or image, a full disk
    except KeyboardInterrupt:
        typer.echo(f"interrupted; {kept()}", err=True)
        raise typer.Exit(130) from None
    typer.echo(json.dumps(summary.to_dict()))
    if summary.predicted == 0:
        fail(f"{input_file}: no line could be predicted ({summary.skipped} skipped)")


def serve(
    run: RunOption,
    host: Annotated[
        str, typer.Option("--host", help="interface to listen on (127.0.0.1: this machine only)")
    ] = ("127.0.0.1"),
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8000,
    checkpoint: CheckpointOption = "best",
    device: DeviceOption = None,
    max_body_bytes: Annotated[int, typer.Option(help="largest request body")] = 10 << 20,
    max_image_bytes: Annotated[int, typer.Option(help="largest image file")] = 8 << 20,
    max_image_pixels: Annotated[int, typer.Option(help="largest image, width x height")] = 25_000_000,
    max_text_chars: Annotated[int, typer.Option(help="longest text, caption or explanation")] = 2000,
    max_batch: Annotated[int, typer.Option(min=1, help="concurrent requests predicted together")] = 16,
    batch_wait_ms: Annotated[
        float, typer.Option(min=0, help="how long a request waits for others to share its batch")
    ] = 5.0,
    generate_explanations: Annotated[
        bool,
        typer.Option(
            "--generate-explanations/--no-generate-explanations",
            help="explain entities that are not cached with the run's backend chain, per request: a local "
            "LM then runs inside the model lock (seconds per batch on a CPU, every request waits) and the "
            "new entities are written to the explanation cache. Off: cached explanations only; a request "
            "whose entities are not cached gets 422 and must send its own 'explanations'",
        ),
    ] = True,
    feature_cache_mb: Annotated[
        float,
        typer.Option(
            min=0,
            help="memory for the features of new images, captions and explanations (least recently used "
            "dropped first); the run's feature cache on disk is only read",
        ),
    ] = 256.0,
    allow_origin: Annotated[
        list[str] | None,
        typer.Option(
            "--allow-origin",
            help="a web origin (e.g. https://mre.example.org, behind a proxy) whose pages may post to the "
            "server besides its own; repeatable",
        ),
    ] = None,
    precision: PrecisionOption = None,
) -> None:
    """Serve the model over HTTP: POST /predict, GET /health, GET /labels, and a web page at /."""
    import uvicorn
    from pydantic import ValidationError

    from pgmre.serve.app import ServeLimits, create_app

    try:
        limits = ServeLimits(
            max_body_bytes=max_body_bytes,
            max_image_bytes=max_image_bytes,
            max_image_pixels=max_image_pixels,
            max_text_chars=max_text_chars,
        )
    except ValidationError as err:
        fail(str(err))
    predictor = _load(run, checkpoint, device, generate_explanations, precision_value(precision))
    app = create_app(
        predictor,
        limits,
        max_batch=max_batch,
        max_wait_ms=batch_wait_ms,
        feature_cache_mb=feature_cache_mb,
        allowed_origins=allow_origin or (),
    )
    uvicorn.run(app, host=host, port=port, log_level="info")


def register(app: typer.Typer) -> None:
    app.command("predict")(predict)
    app.command("serve")(serve)
