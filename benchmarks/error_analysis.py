"""Where the quality runs differ: error types, per-relation F1 and agreement with entity-name priors.

Reads the val predictions stored in ``benchmarks/results/mnre_quality.json`` (no model is run) and asks
whether the explanation variants lose F1 by *memorising entities*: if they did, more of their errors
would repeat the relation the train split most often gives the entity's name (its "name prior").

    python benchmarks/error_analysis.py base ent ent-names full --write docs/results.md

Writes ``benchmarks/results/error_analysis.json`` and prints the Markdown tables of docs/results.md.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from common import ROOT, TRAIN, VAL, replace_block, save_results
from pgmre.data.mnre import Sample, load_samples
from pgmre.evaluate.metrics import score
from pgmre.labels import NEGATIVE_LABEL, RelationVocab

QUALITY = ROOT / "benchmarks" / "results" / "mnre_quality.json"
OUT = ROOT / "benchmarks" / "results" / "error_analysis.json"


def name_priors(train: Sequence[Sample], samples: Sequence[Sample]) -> list[str | None]:
    """Per sample, the train split's most frequent relation over its head and tail names (None if unseen)."""
    by_name: dict[str, Counter[str]] = defaultdict(Counter)
    for s in train:
        for entity in (s.head, s.tail):
            by_name[entity.name.lower()][s.relation or NEGATIVE_LABEL] += 1
    priors: list[str | None] = []
    for s in samples:
        counts: Counter[str] = Counter()
        for entity in (s.head, s.tail):
            counts.update(by_name.get(entity.name.lower(), Counter()))
        priors.append(counts.most_common(1)[0][0] if counts else None)
    return priors


def error_types(report: dict) -> dict[str, int]:
    """Split the errors by kind, from the confusion matrix (rows gold, columns predicted)."""
    labels = report["confusion"]["labels"]
    cm = np.array(report["confusion"]["matrix"])
    neg = labels.index(NEGATIVE_LABEL)
    pos = [i for i in range(len(labels)) if i != neg]
    rel_to_rel = int(cm[np.ix_(pos, pos)].sum() - np.trace(cm[np.ix_(pos, pos)]))
    return {
        "none_to_relation": int(cm[neg, pos].sum()),
        "relation_to_none": int(cm[pos, neg].sum()),
        "relation_to_other": rel_to_rel,
    }


def analyse(gold: list[str], pred: list[str], priors: list[str | None], vocab: RelationVocab) -> dict:
    report = score(gold, pred, vocab)
    with_prior = [(g, p, q) for g, p, q in zip(gold, pred, priors, strict=True) if q is not None]
    errors = [(g, p, q) for g, p, q in with_prior if g != p]
    return {
        "f1": report["f1"],
        "errors": error_types(report),
        "per_relation_f1": {k: v["f1"] for k, v in report["per_relation"].items() if v["support"]},
        "samples_with_name_prior": len(with_prior),
        "predictions_equal_to_prior": sum(p == q for _, p, q in with_prior),
        "errors_with_prior": len(errors),
        "errors_equal_to_prior": sum(p == q for _, p, q in errors),
    }


def tables(results: dict) -> str:
    runs = results["runs"]
    rows = [
        "| run | F1 | None → relation | relation → None | relation → other | errors that repeat the name prior |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in runs.items():
        e = r["errors"]
        share = 100 * r["errors_equal_to_prior"] / max(1, r["errors_with_prior"])
        rows.append(
            f"| {name} | {r['f1']:.2f} | {e['none_to_relation']} | {e['relation_to_none']} | "
            f"{e['relation_to_other']} | {r['errors_equal_to_prior']} of {r['errors_with_prior']} ({share:.0f}%) |"
        )
    support = results["support"]
    relations = [k for k, _ in sorted(support.items(), key=lambda kv: -kv[1])[:8]]
    rows += ["", "| relation | val n | " + " | ".join(runs) + " |", "| --- | --- |" + " --- |" * len(runs)]
    for rel in relations:
        cells = [f"{runs[n]['per_relation_f1'].get(rel, 0.0):.1f}" for n in runs]
        rows.append(f"| `{rel}` | {support[rel]} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("runs", nargs="+", help="experiment names in mnre_quality.json")
    parser.add_argument("--write", type=Path, help="also replace the error_table block of this Markdown file")
    args = parser.parse_args()
    exps = json.loads(QUALITY.read_text())["experiments"]
    missing = [n for n in args.runs if n not in exps]
    if missing:
        raise SystemExit(f"not in {QUALITY}: {', '.join(missing)} (run benchmarks/mnre_quality.py first)")
    val = load_samples(ROOT / VAL, require_image=False)
    gold = [s.relation or NEGATIVE_LABEL for s in val]
    priors = name_priors(load_samples(ROOT / TRAIN, require_image=False), val)
    vocab = RelationVocab.mnre()
    results = {
        "data": {"train": TRAIN, "val": VAL},
        "support": dict(Counter(gold)),
        "prior_equals_gold": sum(g == q for g, q in zip(gold, priors, strict=True) if q is not None),
        "runs": {n: analyse(gold, exps[n]["val_predictions"], priors, vocab) for n in args.runs},
    }
    save_results(OUT, results)
    text = tables(results)
    print(text)
    if args.write:
        args.write.write_text(replace_block(args.write.read_text(), "error_table", text))
        print(f"updated {args.write}")


if __name__ == "__main__":
    main()
