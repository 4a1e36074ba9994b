"""Training and inference speed of pgmre on MNRE on this machine (issues 7 and 17).

For each text encoder x model variant x precision (fp32 / bf16 autocast) x ``train.length_buckets`` x
AdamW kernel (one subprocess each, so peak RSS is the configuration's own), on ``configs/cpu.yaml``:

- data preparation time (tokenization, explanations from the cache, frozen caption/explanation
  features; cold or warm cache as found, reported),
- training throughput: ``--steps`` optimizer steps at batch 16 after 3 warm-up steps, drawn as the
  trainer draws them (bucketed batches), samples/s and the epoch time it implies for the 12,247
  training samples (labelled ``implied``), and the step's FLOPs (``torch.utils.flop_counter``) as
  achieved GFLOP/s and as a fraction of this machine's own 2048^2 matmul peak in that precision,
  measured first by the same script,
- inference throughput with cached explanations and features: batch 64 over all of val and batch 1
  over ``--batch1-samples`` samples,
- peak resident memory of the process.

``--scaling`` instead trains one real epoch (no dev evaluation) on 25/50/100% of train with the full
model and records the measured wall time of each. Results: ``benchmarks/results/mnre_speed.json``
(this grid under ``precision``).

    python benchmarks/mnre_speed.py --variants text-only base full --encoders minilm mpnet
    python benchmarks/mnre_speed.py --variants full --buckets 0 50 --optimizers for-loop fused
    python benchmarks/mnre_speed.py --variants text-only --precisions fp32 --compile off on
    python benchmarks/mnre_speed.py --scaling
"""

from __future__ import annotations

import argparse
import copy
import itertools
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import ROOT, TRAIN, VAL, save_results, train_command

RESULTS = ROOT / "benchmarks" / "results" / "mnre_speed.json"
MNRE_TRAIN_SIZE = 12247


def _overrides(variant: str) -> list[str]:
    from pgmre.model import variant_overrides

    extra = ["visual.source=none"] if variant == "text-only" else []
    return [f"model.{k}={json.dumps(v)}" for k, v in variant_overrides(variant).items()] + extra


ENCODERS = {"minilm": "bundled:minilm", "mpnet": "bundled:mpnet"}


def matmul_peak(dtype_name: str, n: int = 2048, min_seconds: float = 2.0) -> float:
    """GFLOP/s of an n x n matmul in ``dtype_name`` on this machine (the ceiling a step is measured against)."""
    import torch

    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    a @ b  # warm-up: oneDNN picks its kernel
    reps, t0 = 0, time.perf_counter()
    while reps < 3 or time.perf_counter() - t0 < min_seconds:
        a @ b
        reps += 1
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e9


def _padded_tokens(batch: dict) -> int:
    return int(batch["input_ids"].numel())


def measure_variant(
    variant: str,
    steps: int,
    batch1_samples: int,
    train_samples_limit: int | None,
    val_samples_limit: int | None = None,
    precision: str = "fp32",
    encoder: str = "minilm",
    buckets: int = 50,
    optimizer_impl: str = "auto",
    compiled: bool = False,
) -> dict:
    """Runs in its own process: prepare data, time training steps (as the trainer runs them: the epoch's
    bucketed batches, autocast, clipping, the configured AdamW kernel) and inference.

    ``compiled``: the text encoder under ``torch.compile(dynamic=True)`` (Inductor); its compilation
    happens in the warm-up steps, whose time is reported apart."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from pgmre.config import load_config
    from pgmre.data.mnre import load_samples
    from pgmre.evaluate.inference import move_batch, predict_dataset, sample_lengths
    from pgmre.pipeline import MREPipeline
    from pgmre.precision import autocast
    from pgmre.train.batching import epoch_batches
    from pgmre.train.optim import build_optimizer

    os.chdir(ROOT)
    overrides = [
        *_overrides(variant),
        f"text.encoder={ENCODERS[encoder]}",
        f"train.precision={precision}",
        f"train.length_buckets={buckets}",
        f"train.optimizer_impl={optimizer_impl}",
    ]
    config = load_config(ROOT / "configs" / "cpu.yaml", overrides)
    torch.manual_seed(config.seed)
    pipeline = MREPipeline.from_config(config)
    train_samples = load_samples(TRAIN, pipeline.vocab)[:train_samples_limit]
    val_samples = load_samples(VAL, pipeline.vocab)[:val_samples_limit]

    started = time.perf_counter()
    train_set = pipeline.dataset(train_samples, split="train")
    val_set = pipeline.dataset(val_samples, split="dev")
    prep_seconds = time.perf_counter() - started

    model = pipeline.build_model()
    # FLOPs are counted afterwards on an eager copy (so the prototype EMA and the RNG of the timed model
    # are untouched, and the counter sees every op); the optimizer is excluded.
    counter_model = copy.deepcopy(model)
    if compiled:
        model.text_encoder.compile(dynamic=True)
    optimizer, scheduler = build_optimizer(model, config.train, total_steps=steps + 3)
    model.train()
    bs = config.train.batch_size
    order = torch.randperm(len(train_set), generator=torch.Generator().manual_seed(0)).tolist()
    batches = epoch_batches(order, bs, sample_lengths(train_set), buckets, seed=config.seed, epoch=0)
    batches = [b for b in batches if len(b) == bs][: steps + 3]
    if len(batches) <= 3:
        raise SystemExit(f"{len(batches)} full batches: give more --train-samples (3 are warm-up)")
    step_times, optimizer_times, tokens = [], [], []
    warmup_started, warmup_seconds = time.perf_counter(), 0.0
    for step, indices in enumerate(batches):
        t0 = time.perf_counter()
        batch = move_batch(pipeline.collate([train_set[i] for i in indices]), torch.device("cpu"))
        with autocast(precision):  # type: ignore[arg-type]
            out = model(batch)
        out.loss.backward()
        t1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        if step == 2:
            warmup_seconds = time.perf_counter() - warmup_started
        if step >= 3:
            step_times.append(time.perf_counter() - t0)
            optimizer_times.append(time.perf_counter() - t1)
            tokens.append(_padded_tokens(batch))
    seconds_per_step = sum(step_times) / len(step_times)

    flops = 0
    for indices in batches[3:]:
        batch = move_batch(pipeline.collate([train_set[i] for i in indices]), torch.device("cpu"))
        with FlopCounterMode(display=False) as counter:
            counter_model(batch).loss.backward()
        counter_model.zero_grad(set_to_none=True)
        flops += counter.get_total_flops()
    del counter_model
    flops_per_step = flops / len(step_times)

    model.eval()
    warm = torch.utils.data.Subset(val_set, range(min(128, len(val_set))))
    predict_dataset(model, warm, pipeline.collate, batch_size=64, precision=precision)  # (re)compiles here
    t0 = time.perf_counter()
    predict_dataset(model, val_set, pipeline.collate, batch_size=64, precision=precision)
    infer64 = len(val_set) / (time.perf_counter() - t0)
    subset = torch.utils.data.Subset(val_set, range(min(batch1_samples, len(val_set))))
    t0 = time.perf_counter()
    predict_dataset(model, subset, pipeline.collate, batch_size=1, precision=precision)
    infer1 = len(subset) / (time.perf_counter() - t0)
    train_sps = bs / seconds_per_step
    return {
        "variant": variant,
        "encoder": encoder,
        "precision": precision,
        "length_buckets": buckets,
        "optimizer_impl": optimizer_impl,
        "compiled": compiled,
        "warmup_seconds_3_steps": round(warmup_seconds, 1),
        "train_samples_prepared": len(train_samples),
        "val_samples": len(val_samples),
        "data_prep_seconds": round(prep_seconds, 1),
        "train_steps_timed": len(step_times),
        "train_seconds_per_step": round(seconds_per_step, 4),
        "train_seconds_per_step_optimizer": round(sum(optimizer_times) / len(optimizer_times), 4),
        "mean_padded_tokens_per_batch": round(sum(tokens) / len(tokens), 1),
        "train_samples_per_second": round(train_sps, 2),
        "implied_epoch_minutes": round(MNRE_TRAIN_SIZE / train_sps / 60, 1),
        "gflop_per_step": round(flops_per_step / 1e9, 1),
        "achieved_gflops": round(flops_per_step / seconds_per_step / 1e9, 1),
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


def _key(row: dict) -> str:
    key = f"{row['encoder']}/{row['variant']}/{row['precision']}/buckets{row['length_buckets']}/{row['optimizer_impl']}"
    return key + ("/compiled" if row.get("compiled") else "")


def _speedups(rows: dict) -> dict:
    """bf16 over fp32 step time and batch-64 inference, per configuration measured in both."""
    out = {}
    for key, row in rows.items():
        if row["precision"] != "bf16":
            continue
        fp32 = rows.get(key.replace("/bf16/", "/fp32/"))
        if fp32:
            out[key.replace("/bf16/", "/")] = {
                "train_step": round(fp32["train_seconds_per_step"] / row["train_seconds_per_step"], 2),
                "inference_batch64": round(
                    row["inference_samples_per_second_batch64"]
                    / fp32["inference_samples_per_second_batch64"],
                    2,
                ),
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="*", default=["text-only", "base", "full"])
    parser.add_argument("--encoders", nargs="*", default=["minilm"], choices=sorted(ENCODERS))
    parser.add_argument("--precisions", nargs="*", default=["fp32", "bf16"], choices=["fp32", "bf16"])
    parser.add_argument("--buckets", nargs="*", type=int, default=[50], help="train.length_buckets values")
    parser.add_argument("--optimizers", nargs="*", default=["auto"], help="train.optimizer_impl values")
    parser.add_argument(
        "--compile", nargs="*", default=["off"], choices=["off", "on"], help="torch.compile the text encoder"
    )
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--batch1-samples", type=int, default=100)
    parser.add_argument("--train-samples", type=int, help="prepare only the first N training samples")
    parser.add_argument("--val-samples", type=int, help="infer on only the first N val samples")
    parser.add_argument("--scaling", action="store_true", help="real one-epoch runs at 25/50/100%% of train")
    parser.add_argument("--fractions", nargs="*", type=float, default=[0.25, 0.5, 1.0], help="with --scaling")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON to update (default: %(default)s)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        encoder, variant, precision, buckets, optimizer_impl, compiled = args.worker.split(",")
        row = measure_variant(
            variant,
            args.steps,
            args.batch1_samples,
            args.train_samples,
            args.val_samples,
            precision=precision,
            encoder=encoder,
            buckets=int(buckets),
            optimizer_impl=optimizer_impl,
            compiled=compiled == "on",
        )
        print(json.dumps(row))
        return
    import torch

    from pgmre.precision import cpu_flags, cpu_has_bf16_units, cpu_model_name

    results = json.loads(args.results.read_text()) if args.results.exists() else {}
    machine = {
        "cpus": os.cpu_count(),
        "cpu_model": cpu_model_name(),
        "bf16_units": sorted(cpu_flags() & {"amx_bf16", "avx512_bf16", "amx_tile"}),
        "train_precision_auto_picks": "bf16" if cpu_has_bf16_units() else "fp32",
        # without bf16 units, the bf16 peak below is oneDNN's emulation, and fractions of it flatter
        "bf16_emulated": not cpu_has_bf16_units(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    load = [round(x, 2) for x in os.getloadavg()]
    if args.scaling:
        results["machine"] = machine
        results["load_average_at_start"] = load
        done = {row["fraction"]: row for row in results.get("scaling", [])}
        done.update({row["fraction"]: row for row in measure_scaling(args.fractions)})
        results["scaling"] = [done[f] for f in sorted(done)]
        save_results(args.results, results)
        return
    machine["matmul_2048_gflops"] = {p: round(matmul_peak(p), 1) for p in ("fp32", "bf16")}
    print(json.dumps(machine), flush=True)
    section = results.setdefault("precision", {})
    section["machine"] = machine
    section["load_average_at_start"] = load
    rows = section.setdefault("rows", {})
    for encoder in args.encoders:
        for variant in args.variants:
            for buckets in args.buckets:
                for optimizer_impl, compiled in itertools.product(args.optimizers, args.compile):
                    for precision in args.precisions:
                        spec = ",".join([encoder, variant, precision, str(buckets), optimizer_impl, compiled])
                        cmd = [sys.executable, __file__, "--worker", spec, "--steps", str(args.steps)]
                        cmd += ["--batch1-samples", str(args.batch1_samples)]
                        if args.train_samples:
                            cmd += ["--train-samples", str(args.train_samples)]
                        if args.val_samples:
                            cmd += ["--val-samples", str(args.val_samples)]
                        proc = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT)
                        row = json.loads(proc.stdout.strip().splitlines()[-1])
                        peak = machine["matmul_2048_gflops"][precision]
                        row["fraction_of_matmul_peak"] = round(row["achieved_gflops"] / peak, 3)
                        row["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
                        rows[_key(row)] = row
                        section["bf16_speedup"] = _speedups(rows)
                        save_results(args.results, results)
                        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
