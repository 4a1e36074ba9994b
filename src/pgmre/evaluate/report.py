"""``pgmre evaluate``: score a trained run on a file and write the report, predictions and plots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pgmre.config import protocol_statement
from pgmre.data.mnre import load_samples, load_split
from pgmre.data.subsets import load_wordpiece_vocab
from pgmre.evaluate.inference import Predictions, predict_dataset
from pgmre.evaluate.metrics import score_samples
from pgmre.evaluate.plots import plot_confusion, plot_projection, plot_prototype_usage, plot_training_curves
from pgmre.outputs import atomic_write, check_output_dir, write_text_atomic

#: What ``evaluate_run`` writes into its output directory.
OUTPUT_FILES = (
    "report.json",
    "predictions.jsonl",
    "report.md",
    "training_curves.png",
    "confusion.png",
    "prototypes.png",
    "projection.png",
)


@dataclass
class EvaluationResult:
    report: dict[str, Any]
    out_dir: Path
    files: dict[str, Path]


def prediction_records(dataset: Any, preds: Predictions, vocab: Any, k: int = 3) -> list[dict[str, Any]]:
    """One JSON-able record per sample: the paper's case analysis (top-k, explanations, prototypes)."""
    top_idx, top_p = preds.top_k(min(k, preds.probs.shape[1]))
    records = []
    for i, sample in enumerate(dataset.samples):
        expl = dataset.explanations[i] if dataset.explanations is not None else None
        records.append(
            {
                "index": i,
                "text": sample.text,
                "head": sample.head.name,
                "tail": sample.tail.name,
                "img_id": sample.img_id,
                "gold": sample.relation,
                "predicted": vocab.decode(int(top_idx[i, 0])),
                "relation": vocab.decode(int(top_idx[i, 0])),  # the key `pgmre score --pred` reads
                "probability": round(float(top_p[i, 0]), 6),
                "top": [
                    {"relation": vocab.decode(int(j)), "probability": round(float(p), 6)}
                    for j, p in zip(top_idx[i], top_p[i], strict=True)
                ],
                "explanations": {"head": expl[0], "tail": expl[1]} if expl is not None else None,
                "attribute_prototype": int(preds.attr_ids[i]) if preds.attr_ids is not None else None,
                "relation_prototype": int(preds.rel_ids[i]) if preds.rel_ids is not None else None,
            }
        )
    return records


def _pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}"


def _markdown(report: dict[str, Any], data_path: str, run_dir: Path, plots: dict[str, Path]) -> str:
    lines = [
        f"# Evaluation of `{run_dir}`",
        "",
        f"Data: `{data_path}` ({report['n']} samples)",
        "",
        f"**Protocol: {report['protocol_note']}**",
        "",
        "| split | n | accuracy | precision | recall | micro-F1 | macro-F1 |",
        "| --- | --- | --- | --- | --- | --- | --- |",
        f"| all | {report['n']} | {report['accuracy']:.2f} | {report['precision']:.2f} | {report['recall']:.2f} "
        f"| {report['f1']:.2f} | {report['macro_f1']:.2f} |",
    ]
    for name, sub in (report.get("subsets") or {}).items():
        lines.append(
            f"| {name} | {sub['n']} | {sub['accuracy']:.2f} | {sub['precision']:.2f} | {sub['recall']:.2f} "
            f"| {sub['f1']:.2f} | {_pct(sub.get('macro_f1'))} |"
        )
    lines += [
        "",
        "## Per relation",
        "",
        "| relation | support | P | R | F1 |",
        "| --- | --- | --- | --- | --- |",
    ]
    for rel, m in report["per_relation"].items():
        lines.append(f"| {rel} | {m['support']} | {m['precision']:.2f} | {m['recall']:.2f} | {m['f1']:.2f} |")
    if plots:
        lines += ["", "## Plots", ""]
        lines += [f"![{name}]({path.name})" for name, path in plots.items()]
    return "\n".join(lines) + "\n"


def evaluate_run(
    run_dir: str | Path,
    data_path: str | Path,
    train_path: str | Path | None = None,
    out_dir: str | Path | None = None,
    checkpoint: str = "best",
    batch_size: int | None = None,
    progress: bool = True,
    split: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    vocab_path: str | Path | None = None,
) -> EvaluationResult:
    """``precision``: auto/fp32/bf16 (default: the run's ``train.precision``); ``device``: the model's
    (default: CUDA when there is one, as for ``Predictor``, so both score with the same arithmetic);
    ``vocab_path``: the WordPiece vocabulary that defines MNRE-UT (default: the bundled BERT-uncased)."""
    from pgmre.encoders.frozen_text import pick_device
    from pgmre.pipeline import MREPipeline
    from pgmre.precision import resolve_precision

    run_dir = Path(run_dir)
    out = Path(out_dir) if out_dir else run_dir / f"eval-{Path(data_path).stem}"
    check_output_dir(out, OUTPUT_FILES, [data_path, train_path, vocab_path])  # before minutes of work
    if train_path:  # the subsets' vocabulary too: a missing one would otherwise surface after inference
        load_wordpiece_vocab(vocab_path)
    pipeline = MREPipeline.from_run(run_dir, progress=progress)
    model = pipeline.load_model(run_dir / checkpoint).to(pick_device(device))
    samples = load_split(str(data_path), pipeline.vocab, pipeline.config.data.strict)
    # the train file only names the seen entities (MNRE-US): read every record, as `pgmre score --train` does
    train_samples = (
        load_samples(train_path, strict=False, require_relation=False, require_image=False)
        if train_path
        else None
    )
    if split is None and (pipeline.config.text.phrases or pipeline.config.visual.crops.index):
        # line-keyed phrases and crop lists repeat across splits: take the split the file's name says
        # (mnre_val -> dev); a crop list is not read for a file whose name names none (new posts)
        from pgmre.encoders.paths import split_named_by, split_of_file

        split = split_of_file(data_path) if pipeline.config.text.phrases else split_named_by(data_path)
    dataset = pipeline.dataset(samples, split=split)
    arithmetic = resolve_precision(
        precision or pipeline.config.train.precision, next(model.parameters()).device
    )
    preds = predict_dataset(
        model,
        dataset,
        pipeline.collate,
        batch_size=batch_size or pipeline.config.train.eval_batch_size,
        progress=progress,
        desc="evaluate",
        precision=arithmetic,
    )
    predicted = [pipeline.vocab.decode(int(x)) for x in preds.labels]
    report = score_samples(
        samples, predicted, pipeline.vocab, train_samples=train_samples, vocab_path=vocab_path
    )
    report["data"] = str(data_path)
    report["protocol"] = pipeline.config.protocol
    report["protocol_note"] = protocol_statement(pipeline.config)
    report["checkpoint"] = str(run_dir / checkpoint)
    report["compute_precision"] = arithmetic

    out.mkdir(parents=True, exist_ok=True)
    files: dict[str, Path] = {}
    files["report.json"] = write_text_atomic(out / "report.json", json.dumps(report, indent=1))
    files["predictions.jsonl"] = out / "predictions.jsonl"
    with atomic_write(files["predictions.jsonl"]) as fh:
        for record in prediction_records(dataset, preds, pipeline.vocab):
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")

    plots: dict[str, Path] = {}
    mcfg = pipeline.config.model
    candidates = {
        "training_curves": plot_training_curves(run_dir / "metrics.jsonl", out / "training_curves.png"),
        "confusion": plot_confusion(
            report["confusion"]["matrix"], report["confusion"]["labels"], out / "confusion.png"
        ),
        "prototype_usage": plot_prototype_usage(
            preds.attr_ids,
            preds.rel_ids,
            mcfg.num_attr_prototypes,
            mcfg.num_rel_prototypes,
            out / "prototypes.png",
        ),
        "projection": plot_projection(
            preds.fused, [s.relation or "?" for s in samples], out / "projection.png"
        ),
    }
    plots = {k: v for k, v in candidates.items() if v is not None}
    files.update({p.name: p for p in plots.values()})
    markdown = _markdown(report, str(data_path), run_dir, plots)
    files["report.md"] = write_text_atomic(out / "report.md", markdown)
    return EvaluationResult(report=report, out_dir=out, files=files)
