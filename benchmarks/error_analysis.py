"""Where the quality runs differ: error types, per-relation F1 and agreement with entity-name priors.

Reads the val predictions stored in ``benchmarks/results/mnre_quality.json`` (no model is run) and asks
whether the explanation variants lose F1 by *memorising entities*. The *name prior* of a val sample is
the relation train most often gives its head and tail names. Where that prior is not the gold label
(it would mislead), a model that memorised entities would predict it more often than Base does.

    python benchmarks/error_analysis.py text-only base base-seed43 ent ent-names ent-gate full \
        --write docs/results.md

Writes ``benchmarks/results/error_analysis.json`` (the runs named on this call only) and prints the
Markdown tables of docs/results.md.
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


def relation_priors(train: Sequence[Sample], samples: Sequence[Sample]) -> list[str | None]:
    """Per sample, the relation (not ``None``) the train split most often gives its head and tail names.

    Head and tail counts are pooled; ties go to the relation met first in train. ``None`` when neither
    name occurs in train with a relation.
    """
    by_name: dict[str, Counter[str]] = defaultdict(Counter)
    for s in train:
        if s.relation and s.relation != NEGATIVE_LABEL:
            for entity in (s.head, s.tail):
                by_name[entity.name.lower()][s.relation] += 1
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
    between_relations = cm[np.ix_(pos, pos)]
    rel_to_rel = int(between_relations.sum() - np.trace(between_relations))
    return {
        "none_to_relation": int(cm[neg, pos].sum()),
        "relation_to_none": int(cm[pos, neg].sum()),
        "relation_to_other": rel_to_rel,
    }


def analyse(gold: list[str], pred: list[str], priors: list[str | None], vocab: RelationVocab) -> dict:
    """One run's F1, error types, per-relation F1 and how often it follows a *wrong* name prior."""
    report = score(gold, pred, vocab)
    # samples where predicting the entity names' usual relation is an error: memorising shows up here
    misleading = [(p, q) for g, p, q in zip(gold, pred, priors, strict=True) if q is not None and q != g]
    return {
        "f1": report["f1"],
        "errors": error_types(report),
        "per_relation_f1": {k: v["f1"] for k, v in report["per_relation"].items() if v["support"]},
        "misleading_prior_samples": len(misleading),
        "follows_misleading_prior": sum(p == q for p, q in misleading),
    }


def tables(results: dict) -> str:
    """The error-type table and the per-relation F1 of the most frequent relations, in Markdown."""
    runs = results["runs"]
    rows = [
        "| run | F1 | None → relation | relation → None | relation → other | follows a misleading name prior |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for name, r in runs.items():
        e = r["errors"]
        share = 100 * r["follows_misleading_prior"] / max(1, r["misleading_prior_samples"])
        rows.append(
            f"| {name} | {r['f1']:.2f} | {e['none_to_relation']} | {e['relation_to_none']} | "
            f"{e['relation_to_other']} | {r['follows_misleading_prior']} of {r['misleading_prior_samples']} ({share:.1f}%) |"
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
    priors = relation_priors(load_samples(ROOT / TRAIN, require_image=False), val)
    vocab = RelationVocab.mnre()
    results = {
        "data": {"train": TRAIN, "val": VAL},
        "support": dict(Counter(gold)),
        "samples_with_prior": sum(q is not None for q in priors),
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
