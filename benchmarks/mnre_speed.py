"""Training and inference speed of pgmre on MNRE on this machine (issue 7, "speed and memory").

For each model variant (one subprocess each, so peak RSS is the variant's own), on ``configs/cpu.yaml``:

- data preparation time (tokenization, explanations from the cache, frozen caption/explanation
  features; cold or warm cache as found, reported),
- training throughput: ``--steps`` optimizer steps at batch 16 after 3 warm-up steps, samples/s and the
  epoch time it implies for the 12,247 training samples (labelled ``implied``),
- inference throughput with cached explanations and features: batch 64 over all of val and batch 1
  over ``--batch1-samples`` samples,
- peak resident memory of the process.

``--scaling`` instead trains one real epoch (no dev evaluation) on 25/50/100% of train with the full
model and records the measured wall time of each. Results: ``benchmarks/results/mnre_speed.json``.

    python benchmarks/mnre_speed.py --variants text-only base full
    python benchmarks/mnre_speed.py --scaling
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

from common import ROOT, TRAIN, VAL, save_results, train_command

RESULTS = ROOT / "benchmarks" / "results" / "mnre_speed.json"
MNRE_TRAIN_SIZE = 12247


def _overrides(variant: str) -> list[str]:
    from pgmre.model import variant_overrides

    extra = ["visual.source=none"] if variant == "text-only" else []
    return [f"model.{k}={json.dumps(v)}" for k, v in variant_overrides(variant).items()] + extra


def measure_variant(variant: str, steps: int, batch1_samples: int, train_samples_limit: int | None) -> dict:
    """Runs in its own process: prepare data, time training steps and inference."""
    import torch

    from pgmre.config import load_config
    from pgmre.data.mnre import load_samples
    from pgmre.evaluate.inference import move_batch, predict_dataset
    from pgmre.pipeline import MREPipeline
    from pgmre.train.optim import build_optimizer

    os.chdir(ROOT)
    config = load_config(ROOT / "configs" / "cpu.yaml", _overrides(variant))
    torch.manual_seed(config.seed)
    pipeline = MREPipeline.from_config(config)
    train_samples = load_samples(TRAIN, pipeline.vocab)[:train_samples_limit]
    val_samples = load_samples(VAL, pipeline.vocab)

    started = time.perf_counter()
    train_set = pipeline.dataset(train_samples, split="train")
    val_set = pipeline.dataset(val_samples, split="dev")
    prep_seconds = time.perf_counter() - started

    model = pipeline.build_model()
    optimizer, scheduler = build_optimizer(model, config.train, total_steps=steps + 3)
    model.train()
    bs = config.train.batch_size
    gen = torch.Generator().manual_seed(0)
    order = torch.randperm(len(train_set), generator=gen).tolist()
    step_times = []
    for step in range(steps + 3):
        items = [train_set[i] for i in order[step * bs : (step + 1) * bs]]
        t0 = time.perf_counter()
        batch = move_batch(pipeline.collate(items), torch.device("cpu"))
        out = model(batch)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step >= 3:
            step_times.append(time.perf_counter() - t0)
    train_sps = bs * len(step_times) / sum(step_times)

    model.eval()
    t0 = time.perf_counter()
    predict_dataset(model, val_set, pipeline.collate, batch_size=64)
    infer64 = len(val_set) / (time.perf_counter() - t0)
    subset = torch.utils.data.Subset(val_set, range(min(batch1_samples, len(val_set))))
    t0 = time.perf_counter()
    predict_dataset(model, subset, pipeline.collate, batch_size=1)
    infer1 = len(subset) / (time.perf_counter() - t0)
    return {
        "variant": variant,
        "train_samples_prepared": len(train_samples),
        "val_samples": len(val_samples),
        "data_prep_seconds": round(prep_seconds, 1),
        "train_steps_timed": len(step_times),
        "train_seconds_per_step": round(sum(step_times) / len(step_times), 4),
        "train_samples_per_second": round(train_sps, 2),
        "implied_epoch_minutes": round(MNRE_TRAIN_SIZE / train_sps / 60, 1),
        "inference_samples_per_second_batch64": round(infer64, 1),
        "inference_samples_per_second_batch1": round(infer1, 1),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "torch_threads": torch.get_num_threads(),
    }


def measure_scaling(fractions: list[float]) -> list[dict]:
    rows = []
    for fraction in fractions:
        n = round(MNRE_TRAIN_SIZE * fraction)
        run = ROOT / "runs" / "bench-speed" / f"scaling-{int(fraction * 100)}"
        shutil.rmtree(run, ignore_errors=True)  # a fresh epoch, never a resumed one
        cmd = train_command("full", run, "train.epochs=1", "data.dev=null", f"data.max_train_samples={n}")
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True)
        wall = time.perf_counter() - t0
        metrics = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
        rows.append(
            {
                "fraction": fraction,
                "train_samples": n,
                "epoch_seconds": metrics["epoch_seconds"],
                "command_wall_seconds": round(wall, 1),
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="*", default=["text-only", "base", "full"])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--batch1-samples", type=int, default=200)
    parser.add_argument("--train-samples", type=int, help="prepare only the first N training samples")
    parser.add_argument("--scaling", action="store_true", help="real one-epoch runs at 25/50/100%% of train")
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.25, 0.5, 1.0], help="with --scaling")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure_variant(args.worker, args.steps, args.batch1_samples, args.train_samples)))
        return
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results["machine"] = {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }
    results["load_average_at_start"] = os.getloadavg()
    if args.scaling:
        done = {row["fraction"]: row for row in results.get("scaling", [])}
        done.update({row["fraction"]: row for row in measure_scaling(args.fractions)})
        results["scaling"] = [done[f] for f in sorted(done)]
    else:
        variants = results.setdefault("variants", {})
        for variant in args.variants:
            proc = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--worker",
                    variant,
                    "--steps",
                    str(args.steps),
                    "--batch1-samples",
                    str(args.batch1_samples),
                    *(["--train-samples", str(args.train_samples)] if args.train_samples else []),
                ],
                check=True,
                capture_output=True,
                text=True,
                cwd=ROOT,
            )
            variants[variant] = json.loads(proc.stdout.strip().splitlines()[-1])
            print(json.dumps(variants[variant]), flush=True)
        if "text-only" in variants and "full" in variants:
            results["full_over_text_only_step_time"] = round(
                variants["full"]["train_seconds_per_step"] / variants["text-only"]["train_seconds_per_step"],
                2,
            )
    save_results(RESULTS, results)


if __name__ == "__main__":
    main()
