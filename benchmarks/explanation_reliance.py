"""Do trained +Ent models use the explanations? Val F1 of a run with its explanations swapped (issue 7).

For each run directory (trained with explanations), scores the best checkpoint on MNRE val:

- ``real``: each sample with its own explanations (what ``pgmre evaluate`` reports);
- ``shuffled-<seed>``: every sample gets the (head, tail) explanations of another val sample, a
  seeded permutation: the features are real explanations, only the pairing is wrong;
- ``names``: the entity names in place of the explanations (the ``explain.backend=name`` control);
- ``hidden``: every explanation hidden as ``model.explanation_dropout`` hides it in training (the batch's
  ``explanations_hidden``). Only runs trained with that dropout have seen this input; for them it is
  the same network without the explanations;
- ``gate-closed`` (runs with ``model.guidance_gate``): the gates set to 0, i.e. no explanation guidance.

``--write docs/results.md`` renders the tables of every probed run into that file.

A model that relies on the explanation *content* loses F1 when it is shuffled; one that ignores it
does not. Each setting is also scored on val subsets: unseen and seen entities (MNRE-US and the rest)
and the samples with at least one Wikipedia explanation (the others are the LLM's alone), to show where
the explanations help or hurt; ``hidden_vs_real`` is a paired bootstrap of hidden against own
explanations. Results: ``benchmarks/results/explanation_reliance.json``.

    python benchmarks/explanation_reliance.py runs/bench/ent runs/bench/ent-gate --write docs/results.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from common import LABELS, ROOT, TRAIN, VAL, replace_block, save_results
from pgmre.data.mnre import load_samples
from pgmre.data.subsets import unseen_mask
from pgmre.evaluate.inference import predict_dataset
from pgmre.evaluate.metrics import score
from pgmre.evaluate.significance import paired_bootstrap
from pgmre.explain import explanation_sources
from pgmre.pipeline import MREPipeline

RESULTS = ROOT / "benchmarks" / "results" / "explanation_reliance.json"
SUMMARY = ("accuracy", "precision", "recall", "f1", "macro_f1")
SUBSET_TITLES = {
    "unseen": "unseen",
    "seen": "seen",
    "wikipedia": "with a Wikipedia explanation",
    "llm_only": "LLM only",
}


def _subsets(pipeline: MREPipeline, samples: list) -> dict[str, np.ndarray]:
    """Val subsets by entity novelty and by the backend that wrote the sample's explanations."""
    unseen = np.array(unseen_mask(samples, load_samples(ROOT / TRAIN, pipeline.vocab)), dtype=bool)
    sources = explanation_sources(samples, pipeline.config.explain)
    wikipedia = np.array(["wikipedia" in pair for pair in sources], dtype=bool)
    return {"unseen": unseen, "seen": ~unseen, "wikipedia": wikipedia, "llm_only": ~wikipedia}


def _predict(pipeline: MREPipeline, model: Any, dataset: Any, hidden: bool = False) -> list[str]:
    def collate(items: list[Any]) -> dict[str, Any]:
        batch = pipeline.collate(items)
        if hidden:
            batch["explanations_hidden"] = torch.ones(len(items), dtype=torch.bool)
        return batch

    predictions = predict_dataset(model, dataset, collate)
    return [pipeline.vocab.decode(int(i)) for i in predictions.labels]


def _score(
    pipeline: MREPipeline, gold: np.ndarray, predicted: list[str], subsets: dict[str, np.ndarray]
) -> dict:
    pred = np.array(predicted)
    report = score(list(gold), predicted, pipeline.vocab)
    row: dict[str, Any] = {k: report[k] for k in SUMMARY}
    row["subsets"] = {
        name: {"n": int(mask.sum()), "f1": score(list(gold[mask]), list(pred[mask]), pipeline.vocab)["f1"]}
        for name, mask in subsets.items()
    }
    return row


def probe_run(run: Path, seeds: list[int]) -> dict[str, Any]:
    started = time.perf_counter()
    pipeline = MREPipeline.from_run(run)
    if not pipeline.uses_explanations:
        raise SystemExit(f"{run}: trained without explanations, nothing to probe")
    model = pipeline.load_model(run / "best")
    samples = load_samples(ROOT / VAL, pipeline.vocab)
    gold = np.array([s.relation for s in samples])
    real = pipeline.explanations(samples, generate=False)
    subsets = _subsets(pipeline, samples)
    settings: dict[str, list[tuple[str, str]]] = {"real": real}
    for seed in seeds:
        order = torch.randperm(len(real), generator=torch.Generator().manual_seed(seed)).tolist()
        settings[f"shuffled-{seed}"] = [real[i] for i in order]
    settings["names"] = [(s.head.name, s.tail.name) for s in samples]
    datasets = {name: pipeline.dataset(samples, explanations=expl) for name, expl in settings.items()}
    predicted = {name: _predict(pipeline, model, dataset) for name, dataset in datasets.items()}
    predicted["hidden"] = _predict(pipeline, model, datasets["real"], hidden=True)
    gates = [m for m in (model.guide_image, model.guide_objects) if m is not None and m.gate is not None]
    if gates:
        with torch.no_grad():
            for block in gates:
                block.gate.zero_()
        predicted["gate-closed"] = _predict(pipeline, model, datasets["real"])
    return {
        "run": str(run),
        "explanation_dropout": pipeline.config.model.explanation_dropout,
        "n": len(samples),
        "scores": {name: _score(pipeline, gold, pred, subsets) for name, pred in predicted.items()},
        "hidden_vs_real": paired_bootstrap(
            list(gold), predicted["real"], predicted["hidden"], pipeline.vocab
        ),
        "seconds": round(time.perf_counter() - started, 1),
    }


def _ordered(runs: dict[str, Any]) -> list[str]:
    known = [name for name in LABELS if name in runs]
    return known + sorted(set(runs) - set(known))


def _signed(value: float) -> str:
    return f"{value:+.1f}".replace("-", "\u2212")


def reliance_table(runs: dict[str, Any]) -> str:
    """F1 per replacement; hidden scores of runs never trained without explanations are in brackets."""
    rows = [
        "| run | own explanations | another sample's (permutations) | entity names instead | hidden "
        "| hidden − own (95% interval) | gate closed |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in _ordered(runs):
        run = runs[name]
        f1 = {k: f"{v['f1']:.2f}" for k, v in run["scores"].items()}
        shuffled = " / ".join(v for k, v in f1.items() if k.startswith("shuffled-"))
        if "hidden" not in f1:
            hidden = "–"
        elif run.get("explanation_dropout", 0) > 0:
            hidden = f1["hidden"]
        else:
            hidden = f"({f1['hidden']})"  # an input the run was never trained on
        test = run.get("hidden_vs_real")
        delta = "–"
        if test is not None and run.get("explanation_dropout", 0) > 0:
            low, high = test["delta_95"]
            delta = f"{_signed(test['delta'])} [{_signed(low)}, {_signed(high)}]"
        label = LABELS.get(name, name)
        rows.append(
            f"| {label} (`{name}`) | {f1['real']} | {shuffled} | {f1['names']} | {hidden} | {delta} "
            f"| {f1.get('gate-closed', '–')} |"
        )
    return "\n".join(rows)


def subsets_table(runs: dict[str, Any]) -> str:
    """Own / hidden F1 per val subset, for the runs trained with explanation dropout."""
    names = [
        n
        for n in _ordered(runs)
        if runs[n].get("explanation_dropout", 0) > 0 and "subsets" in runs[n]["scores"].get("hidden", {})
    ]
    if not names:
        return "(no run trained with explanation dropout has been probed)"
    sizes = runs[names[0]]["scores"]["real"]["subsets"]
    rows = [
        "| run | " + " | ".join(f"{SUBSET_TITLES[k]} ({v['n']:,})" for k, v in sizes.items()) + " |",
        "| --- |" + " --- |" * len(sizes),
    ]
    for name in names:
        real, hidden = runs[name]["scores"]["real"]["subsets"], runs[name]["scores"]["hidden"]["subsets"]
        cells = [
            f"{real[k]['f1']:.2f} / {hidden[k]['f1']:.2f} ({_signed(hidden[k]['f1'] - real[k]['f1'])})"
            for k in sizes
        ]
        rows.append(f"| `{name}` | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="*", type=Path, help="run directories (with best/)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1])
    parser.add_argument("--write", type=Path, help="also replace the reliance_* blocks of this Markdown file")
    args = parser.parse_args()
    if not args.runs and not args.write:
        parser.error("give run directories to probe, --write to render the stored results, or both")
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"runs": {}}
    for run in args.runs:
        row = probe_run(run, args.seeds)
        results["runs"][run.name] = row
        print(json.dumps({run.name: {k: v["f1"] for k, v in row["scores"].items()}}), flush=True)
    if args.runs:
        results["torch_threads"] = torch.get_num_threads()
        save_results(RESULTS, results)
    if args.write:
        doc = replace_block(args.write.read_text(), "reliance_table", reliance_table(results["runs"]))
        args.write.write_text(replace_block(doc, "reliance_subsets", subsets_table(results["runs"])))


if __name__ == "__main__":
    main()
