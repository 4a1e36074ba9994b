"""Entities/s of the bundled local LM (SmolLM2-135M-Instruct) batched vs one at a time, on this CPU.

Both runs explain the same requests (greedy, so the outputs should agree; the agreement is reported).
Writes benchmarks/results/explain_speed.json. Run with `nice`: the machine is shared.

    .venv/bin/python benchmarks/explain_speed.py --data /path/to/mnre_val.txt --n 32 --batch-sizes 8 16 32
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import torch

from pgmre.explain import ExplanationRequest, requests_for
from pgmre.explain.backends.local import BUNDLED_MODEL, LocalBackend
from pgmre.explain.prompts import get_template

# Used when no data file is given: public-figure posts written for this benchmark.
FALLBACK_POSTS = [
    ("Lionel Messi", "Lionel Messi scores twice as Barcelona beat Real Madrid at the Camp Nou"),
    ("Real Madrid", "Lionel Messi scores twice as Barcelona beat Real Madrid at the Camp Nou"),
    ("NASA", "RT @NASA : Our Perseverance rover has landed on Mars !"),
    ("Mars", "RT @NASA : Our Perseverance rover has landed on Mars !"),
    ("Taylor Swift", "Taylor Swift performs at Wembley Stadium in London tonight"),
    ("Wembley Stadium", "Taylor Swift performs at Wembley Stadium in London tonight"),
    ("Elon Musk", "Elon Musk unveils the new Tesla Cybertruck in Los Angeles"),
    ("Tesla", "Elon Musk unveils the new Tesla Cybertruck in Los Angeles"),
]


def load_requests(data: str | None, n: int) -> list[ExplanationRequest]:
    template = get_template("v1")
    if data:
        from pgmre.data.mnre import load_samples

        requests = list(dict.fromkeys(template.normalise(r) for r in requests_for(load_samples(data))))
    else:
        requests = [ExplanationRequest(e, s) for e, s in FALLBACK_POSTS]
    return [requests[i % len(requests)] for i in range(n)] if len(requests) < n else requests[:n]


def timed(backend: LocalBackend, requests: list[ExplanationRequest]) -> tuple[float, list[str | None], float]:
    started = time.perf_counter()
    results = backend.explain(requests)
    elapsed = time.perf_counter() - started
    tokens = [r.tokens or 0 for r in results]
    return elapsed, [r.text for r in results], sum(tokens) / len(tokens)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="MNRE/JSONL file to draw (entity, post) requests from")
    parser.add_argument("--n", type=int, default=32, help="requests per run")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[16])
    parser.add_argument("--max-new-tokens", type=int, default=40)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--out", default="benchmarks/results/explain_speed.json")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    requests = load_requests(args.data, args.n)
    template = get_template("v1")
    backend = LocalBackend(template, None, args.max_new_tokens, batch_size=1)
    load_started = time.perf_counter()
    backend.load()
    load_s = time.perf_counter() - load_started
    backend.explain(requests[:2])  # warm-up

    runs = []
    single_s, single_texts, single_tokens = timed(backend, requests)
    runs.append(
        {
            "batch_size": 1,
            "seconds": single_s,
            "entities_per_s": len(requests) / single_s,
            "mean_new_tokens": single_tokens,
        }
    )
    for batch_size in args.batch_sizes:
        backend.batch_size = batch_size
        seconds, texts, tokens = timed(backend, requests)
        agree = sum(a == b for a, b in zip(texts, single_texts, strict=True)) / len(texts)
        runs.append({
            "batch_size": batch_size, "seconds": seconds, "entities_per_s": len(requests) / seconds,
            "mean_new_tokens": tokens, "speedup_vs_single": single_s / seconds, "same_text_as_single": agree,
        })  # fmt: skip
        print(json.dumps(runs[-1]))
    result = {
        "model": BUNDLED_MODEL,
        "requests": len(requests),
        "data": args.data or "built-in posts",
        "max_new_tokens": args.max_new_tokens,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average_at_end": os.getloadavg(),
        "model_load_s": load_s,
        "runs": runs,
        "best_speedup": max(r.get("speedup_vs_single", 1.0) for r in runs),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
