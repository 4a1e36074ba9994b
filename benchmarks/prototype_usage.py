"""Do the prototype banks collapse? Codebook usage of the full model under different quantiser settings.

A cheap probe of issue 7's "prototype collapse": each setting trains the full model of
``configs/cpu.yaml`` for one epoch on the first ``--samples`` MNRE training samples (no dev evaluation,
one torch thread so it can run beside a long job) and records, per bank, how many prototypes were
chosen, the codebook perplexity ``exp(entropy)`` of the assignments (23 = uniform over k = t = 23,
1 = everything on one prototype) and the share of the most used prototype. It measures usage, not
F1. Finished runs are collected, not retrained. Results: ``benchmarks/results/prototype_usage.json``.

    python benchmarks/prototype_usage.py
    python benchmarks/prototype_usage.py --only paper refresh-100
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

from common import ROOT, save_results, train_command

RESULTS = ROOT / "benchmarks" / "results" / "prototype_usage.json"
# The quality benchmark's short-schedule recipe (benchmarks/mnre_quality.py, docs/results.md).
RECIPE = ["train.lr=5e-5", "train.head_lr=5e-4"]

SETTINGS: dict[str, list[str]] = {
    "paper": [],  # EMA, k-means++ init on the first batch, commitment 0.25, pooler C_S
    "explanation-mean-pooling": ["model.explanation_pooling=mean"],
    "no-commitment": ["model.commitment_weight=0"],
    "refresh-100": ["model.prototype_refresh_steps=100"],
}


def run_setting(name: str, samples: int, out: Path) -> dict:
    run = out / name
    if not (run / "metrics.jsonl").exists():
        cmd = train_command(
            "full",
            run,
            "train.epochs=1",
            "data.dev=null",
            f"data.max_train_samples={samples}",
            *RECIPE,
            *SETTINGS[name],
        )
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with open(out / f"{name}.log", "w") as log:
            subprocess.run(cmd, check=True, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    record = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    banks = {}
    for bank, stats in record["prototypes"].items():
        usage = stats["usage"]
        banks[bank] = {
            "used": stats["used"],
            "of": len(usage),
            "perplexity": stats["perplexity"],
            "top_share": round(max(usage) / max(sum(usage), 1), 4),
        }
    return {
        "overrides": SETTINGS[name],
        "samples": samples,
        "steps": record["step"],
        "epoch_seconds": record["epoch_seconds"],
        "banks": banks,
    }


def explanation_spread(every: int = 95, limit: int = 200) -> dict:
    """Mean pairwise cosine of frozen MiniLM explanation features: pooler vs [CLS] vs token mean.

    Near-identical inputs to the attribute MLP would explain an attribute bank on one prototype.
    """
    import gzip

    import torch
    import torch.nn.functional as F
    from transformers import AutoModel, AutoTokenizer

    from pgmre.encoders.text import resolve_text_encoder

    artifact = ROOT / "artifacts" / "explanations" / "mnre_train_val.v1.wikipedia-local.jsonl.gz"
    with gzip.open(artifact, "rt") as fh:
        texts = [json.loads(line)["explanation"] for line in fh][::every][:limit]
    encoder = resolve_text_encoder("bundled:minilm")
    tokenizer, model = AutoTokenizer.from_pretrained(encoder), AutoModel.from_pretrained(encoder).eval()
    batch = tokenizer(texts, padding=True, truncation=True, max_length=40, return_tensors="pt")
    with torch.inference_mode():
        out = model(**batch)
    mask = batch["attention_mask"].unsqueeze(-1).float()
    features = {
        "pooler": out.pooler_output,
        "cls": out.last_hidden_state[:, 0],
        "mean": (out.last_hidden_state * mask).sum(1) / mask.sum(1),
    }
    spread = {}
    for name, x in features.items():
        unit = F.normalize(x, dim=-1)
        cos = (unit @ unit.T)[~torch.eye(len(x), dtype=torch.bool)]
        spread[name] = {"mean_cosine": round(float(cos.mean()), 3), "min_cosine": round(float(cos.min()), 3)}
    return {"explanations": len(texts), "encoder": "bundled:minilm", "features": spread}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=list(SETTINGS), help="settings (default: all)")
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-prototypes")
    parser.add_argument("--spread", action="store_true", help="only the explanation-feature spread check")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {"settings": {}}
    results["recipe"] = RECIPE
    if args.spread:
        results["explanation_spread"] = explanation_spread()
        save_results(RESULTS, results)
        print(json.dumps(results["explanation_spread"]))
        return
    for name in args.only or list(SETTINGS):
        print(f"== {name}", flush=True)
        results["settings"][name] = run_setting(name, args.samples, args.out)
        save_results(RESULTS, results)
        print(json.dumps(results["settings"][name]["banks"]), flush=True)


if __name__ == "__main__":
    main()
