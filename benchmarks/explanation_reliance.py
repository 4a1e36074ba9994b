"""Do trained +Ent models use the explanations? Val F1 of a run with its explanations swapped (issue 7).

For each run directory (trained with explanations), scores the best checkpoint on MNRE val:

- ``real``: each sample with its own explanations (what ``pgmre evaluate`` reports);
- ``shuffled-<seed>``: every sample gets the (head, tail) explanations of another val sample, a
  seeded permutation: the features are real explanations, only the pairing is wrong;
- ``names``: the entity names in place of the explanations (the ``explain.backend=name`` control);
- ``gate-closed`` (runs with ``model.guidance_gate``): the gates set to 0, i.e. no explanation guidance.

A model that relies on the explanation *content* loses F1 when it is shuffled; one that ignores it
does not. Results: ``benchmarks/results/explanation_reliance.json``.

    python benchmarks/explanation_reliance.py runs/bench/ent runs/bench/ent-gate
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from common import ROOT, VAL, save_results
from pgmre.data.mnre import load_samples
from pgmre.evaluate.inference import predict_dataset
from pgmre.evaluate.metrics import score
from pgmre.pipeline import MREPipeline

RESULTS = ROOT / "benchmarks" / "results" / "explanation_reliance.json"
SUMMARY = ("accuracy", "precision", "recall", "f1", "macro_f1")


def _score(pipeline: MREPipeline, model: Any, samples: list, explanations: list[tuple[str, str]]) -> dict:
    dataset = pipeline.dataset(samples, explanations=explanations)
    predictions = predict_dataset(model, dataset, pipeline.collate)
    predicted = [pipeline.vocab.decode(int(i)) for i in predictions.labels]
    report = score([s.relation for s in samples], predicted, pipeline.vocab)
    return {k: report[k] for k in SUMMARY}


def probe_run(run: Path, seeds: list[int]) -> dict[str, Any]:
    started = time.perf_counter()
    pipeline = MREPipeline.from_run(run)
    if not pipeline.uses_explanations:
        raise SystemExit(f"{run}: trained without explanations, nothing to probe")
    model = pipeline.load_model(run / "best")
    samples = load_samples(ROOT / VAL, pipeline.vocab)
    real = pipeline.explanations(samples, generate=False)
    settings: dict[str, list[tuple[str, str]]] = {"real": real}
    for seed in seeds:
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed)).tolist()
        settings[f"shuffled-{seed}"] = [real[i] for i in order]
    settings["names"] = [(s.head.name, s.tail.name) for s in samples]
    scores = {name: _score(pipeline, model, samples, expl) for name, expl in settings.items()}
    gates = [m for m in (model.guide_image, model.guide_objects) if m is not None and m.gate is not None]
    if gates:
        with torch.no_grad():
            for block in gates:
                block.gate.zero_()
        scores["gate-closed"] = _score(pipeline, model, samples, real)
    return {
        "run": str(run),
        "n": len(samples),
        "scores": scores,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", type=Path, help="run directories (with best/)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    args = parser.parse_args()
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    for run in args.runs:
        row = probe_run(run, args.seeds)
        results["runs"][run.name] = row
        print(json.dumps({run.name: {k: v["f1"] for k, v in row["scores"].items()}}), flush=True)
    results["torch_threads"] = torch.get_num_threads()
    save_results(RESULTS, results)


if __name__ == "__main__":
    main()
