"""MNRE train -> val quality of PG-MRE and its baselines on this machine (issue 7, Tables 1-3 and Fig. 4).

Every experiment is ``configs/cpu.yaml`` plus overrides, trained with the same seed and epochs, then
evaluated on val (best checkpoint on dev micro-F1) with the unseen/untokenizable subsets. Runs are
resumable: a finished run is skipped, an interrupted one continues from its last checkpoint. Results
(metrics, durations, hardware) go to ``benchmarks/results/mnre_quality.json``.

    python benchmarks/mnre_quality.py --group ablation --epochs 3
    python benchmarks/mnre_quality.py --only full text-only
    python benchmarks/mnre_quality.py --epochs 8 --out runs/bench8 \
        --results benchmarks/results/mnre_quality_8ep.json --only base   # the paper's schedule
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path

import torch
import yaml

from common import MNRE_DIR, PGMRE, ROOT, TRAIN, VAL, save_results, train_command

RESULTS = ROOT / "benchmarks" / "results" / "mnre_quality.json"
CAPTIONS = f"{MNRE_DIR}/captions/{{}}_{{{{split}}}}.json"

# TMR/CAMIM's grounding phrases: label-carrying, so every run that reads them is a PUBLISHED-PROTOCOL run
PUBLISHED = ["protocol=published", f"text.phrases={MNRE_DIR}/aux/phrase_text_{{split}}.json"]
# the honest control: the same phrase format with spaCy entity types on every sample (`pgmre data phrases`)
TYPES = [f"text.phrases={MNRE_DIR}/types/spacy_{{split}}.json"]

BUCKETED = "train.length_buckets=50"

# all-mpnet-base-v2 (768-d, BERT-base size)
MPNET = ["text.encoder=bundled:mpnet"]
# on a CPU, the MPNet runs save a checkpoint every ~5 minutes of training (an epoch takes ~40 minutes);
# on a GPU an epoch takes about a minute and each 1.4 GB save would cost more than it could save
CPU_CHECKPOINTS = {"encoders": ["train.checkpoint_every_steps=150"]}

# name -> (group, variant, overrides)
EXPERIMENTS: dict[str, tuple[str, str, list[str]]] = {
    "text-only": ("ablation", "text-only", ["visual.source=none"]),
    "base": ("ablation", "base", []),
    "ent": ("ablation", "ent", []),
    "ent-apm": ("ablation", "ent-apm", []),
    "ent-rpm": ("ablation", "ent-rpm", []),
    "full": ("ablation", "full", []),
    "full-k8": ("prototypes", "full", ["model.num_attr_prototypes=8", "model.num_rel_prototypes=8"]),
    "full-k46": ("prototypes", "full", ["model.num_attr_prototypes=46", "model.num_rel_prototypes=46"]),
    **{
        f"full-{source}": (
            "visual",
            "full",
            [
                f"visual.captions.image={CAPTIONS.format(source)}",
                "visual.captions.objects=[]",
                "visual.num_objects=0",
            ],
        )
        for source in ("cogvlm", "minicpm", "blip")
    },
    # +Ent with the entity name as its explanation: the architecture without the LLM's knowledge
    "ent-names": ("controls", "ent", ["explain.backend=name", "explain.artifact=null"]),
    # Base with another seed: how far apart two runs of the same model land (training noise)
    "base-seed43": ("controls", "base", ["seed=43"]),
    "text-only-seed43": ("controls", "text-only", ["visual.source=none", "seed=43"]),
    "ent-seed43": ("controls", "ent", ["seed=43"]),
    "full-seed43": ("controls", "full", ["seed=43"]),
    # the literal reading of eqs. (9)-(10): the visual slots attend to C_all' alone (docs/method.md)
    "full-literal": ("controls", "full", ["model.rpm_attention=literal"]),
    # issue 17: length-bucketed batches (1.2-1.4x faster steps) against the plain shuffled order: a
    # second seed of `base-bucketed` (defined below with the other `<variant>-bucketed` runs)
    "base-bucketed-seed43": ("controls", "base", [BUCKETED, "seed=43"]),
    "full-k8-seed43": (
        "prototypes",
        "full",
        ["model.num_attr_prototypes=8", "model.num_rel_prototypes=8", "seed=43"],
    ),
    # the fix tried for the prototype collapse found in "full" (docs/results.md, prototype_usage.py)
    "full-refresh100": ("fixes", "full", ["model.prototype_refresh_steps=100"]),
    # the fix tried for the +Ent loss: explanation guidance behind a zero-initialised gate (starts explanation-blind)
    "ent-gate": ("fixes", "ent", ["model.guidance_gate=true"]),
    "full-gate": ("fixes", "full", ["model.guidance_gate=true"]),
    # the paper's reading: explanations run through the fine-tuned text encoder instead of frozen features
    "ent-shared": ("fixes", "ent", ["text.explanation_encoder=shared"]),
    # modality dropout: each training sample hides its explanations with probability 0.5
    "ent-xdrop": ("fixes", "ent", ["model.explanation_dropout=0.5"]),
    "full-xdrop": ("fixes", "full", ["model.explanation_dropout=0.5"]),
    "ent-xdrop-seed43": ("fixes", "ent", ["model.explanation_dropout=0.5", "seed=43"]),
    "full-xdrop-seed43": ("fixes", "full", ["model.explanation_dropout=0.5", "seed=43"]),
    # the same at rate 0.7
    "full-xdrop70": ("fixes", "full", ["model.explanation_dropout=0.7"]),
    "ent-xdrop70": ("fixes", "ent", ["model.explanation_dropout=0.7"]),
    "full-novisual": (
        "visual",
        "full",
        ["visual.source=none", "model.use_visual=false", "model.use_rpm=false"],
    ),
    # issue 16: the published protocol and the honest entity-type control (docs/leakage.md)
    "published-text-only": ("protocols", "text-only", ["visual.source=none", *PUBLISHED]),
    "published-base": ("protocols", "base", PUBLISHED),
    "published-full": ("protocols", "full", PUBLISHED),
    "types-text-only": ("protocols", "text-only", ["visual.source=none", *TYPES]),
    "types-base": ("protocols", "base", TYPES),
    "types-full": ("protocols", "full", TYPES),
    # issue 17: the caption read by the fine-tuned encoder as a second text segment (plain batch order,
    # as the runs above, so that only the input differs)
    "text-caption-segment": (
        "captions",
        "text-only",
        ["visual.source=none", "text.caption_segment=true", "train.length_buckets=0"],
    ),
    "full-caption-segment": ("captions", "full", ["text.caption_segment=true", "train.length_buckets=0"]),
    # the caption's token states through the fine-tuned encoder as F_V (the analogue of ViT patch tokens)
    "base-caption-tokens": (
        "captions",
        "base",
        ["visual.captions.image_tokens=true", "train.length_buckets=0"],
    ),
    "full-caption-tokens": (
        "captions",
        "full",
        ["visual.captions.image_tokens=true", "train.length_buckets=0"],
    ),
    # issue 17: the BERT-base-size encoder (about 26 min per epoch in fp32 on 2 AVX2 cores, so these are
    # meant for `--epochs 8` over several sessions: mid-epoch checkpoints make an interruption cheap)
    "mpnet-text-only": ("encoders", "text-only", ["visual.source=none", *MPNET]),
    "mpnet-full": ("encoders", "full", MPNET),
    # the paper's one rate, 2e-5, for every parameter (configs/paper.yaml): run it without rates on the
    # command line (`_check_overrides` refuses them)
    "full-paper-lr": ("schedule", "full", ["train.lr=2e-5", "train.head_lr=2e-5"]),
}
# each step of the ablation in length-bucketed batches (`base-bucketed`: also the 3-epoch control)
EXPERIMENTS.update(
    {
        f"{name}-bucketed": ("controls", EXPERIMENTS[name][1], [*EXPERIMENTS[name][2], BUCKETED])
        for name in ("text-only", "base", "ent", "ent-apm", "ent-rpm", "full")
    }
)


def _run(cmd: list[str], log: Path) -> float:
    started = time.perf_counter()
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(cmd)}\n")
        fh.flush()
        subprocess.run(cmd, check=True, stdout=fh, stderr=subprocess.STDOUT, cwd=ROOT)
    return time.perf_counter() - started


def _finished(run: Path, epochs: int) -> bool:
    metrics = run / "metrics.jsonl"
    if not metrics.exists():
        return False
    rows = [json.loads(x) for x in metrics.read_text().splitlines() if x.strip()]
    return bool(rows) and rows[-1]["epoch"] >= epochs


def _check_schedule(run: Path, epochs: int) -> None:
    """Refuse to resume a run trained for another number of epochs: `--resume` keeps the run's own
    schedule, so its result would be filed under the wrong epoch count (give another ``--out``)."""
    config = run / "config.yaml"
    if config.exists():
        trained_for = yaml.safe_load(config.read_text())["train"]["epochs"]
        if trained_for != epochs:
            raise SystemExit(
                f"{run} was trained for {trained_for} epochs, not {epochs}: give --out another directory"
            )


def _check_overrides(name: str, overrides: list[str], extra: list[str]) -> None:
    """Refuse a command-line override that would silently replace one the experiment is defined by
    (the command line's come last and win), e.g. the usual rates on `full-paper-lr`."""
    own = dict(o.split("=", 1) for o in overrides)
    clashes = []
    for override in extra:
        key, _, value = override.partition("=")
        if own.get(key, value) != value:
            clashes.append(override)
    if clashes:
        raise SystemExit(
            f"{name} sets {', '.join(overrides)}; drop {', '.join(clashes)} from the command line"
        )


def run_experiment(name: str, epochs: int, out: Path, extra: list[str]) -> dict:
    group, variant, overrides = EXPERIMENTS[name]
    _check_overrides(name, overrides, extra)
    if not torch.cuda.is_available():
        overrides = [*overrides, *CPU_CHECKPOINTS.get(group, [])]
    run = out / name
    log = out / f"{name}.log"
    out.mkdir(parents=True, exist_ok=True)
    train_seconds = 0.0
    _check_schedule(run, epochs)
    if not _finished(run, epochs):
        if (run / "last").exists():
            cmd = [*PGMRE, "train", "--resume", str(run)]
        else:
            cmd = train_command(variant, run, f"train.epochs={epochs}", *overrides, *extra)
        train_seconds = _run(cmd, log)
    eval_dir = run / "eval-val"
    eval_seconds = _run(
        [
            *PGMRE,
            "evaluate",
            "--run",
            str(run),
            "--data",
            VAL,
            "--train",
            TRAIN,
            "--out",
            str(eval_dir),
            "--split",
            "dev",  # line-keyed inputs (phrases) are per split
        ],
        log,
    )
    report = json.loads((eval_dir / "report.json").read_text())
    history = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    predictions = [
        json.loads(line)["relation"]
        for line in (eval_dir / "predictions.jsonl").read_text().splitlines()
        if line.strip()
    ]
    return {
        "name": name,
        "group": group,
        "variant": variant,
        "overrides": overrides + extra,
        "epochs": epochs,
        "best_epoch": max(history, key=lambda r: r.get("dev_f1", -1))["epoch"],
        "val": {k: report[k] for k in ("n", "accuracy", "precision", "recall", "f1", "macro_f1")},
        "subsets": {
            k: {m: v[m] for m in ("n", "accuracy", "precision", "recall", "f1")}
            for k, v in report.get("subsets", {}).items()
        },
        "epoch_seconds": [r["epoch_seconds"] for r in history],
        "dev_f1_per_epoch": [r.get("dev_f1") for r in history],
        # training-time prototype usage of the last epoch: collapse shows as few used / low perplexity
        "prototypes": {
            bank: {k: v for k, v in stats.items() if k != "usage"}
            for bank, stats in history[-1].get("prototypes", {}).items()
        },
        # tanh(g) of each gated guidance block after the last epoch (model.guidance_gate)
        "guidance_gates": history[-1].get("guidance_gates", {}),
        # fp32 / bf16 on a CPU, accelerate's mixed precision on CUDA (absent: a run older than the record)
        "compute_precision": history[-1].get("compute_precision"),
        "train_wall_seconds_this_invocation": round(train_seconds, 1),
        "eval_wall_seconds": round(eval_seconds, 1),
        "run_dir": str(run),
        # val predictions in val order: paired significance tests without the (uncommitted) run dirs
        "val_predictions": predictions,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--group",
        choices=[
            "ablation",
            "prototypes",
            "visual",
            "controls",
            "fixes",
            "protocols",
            "captions",
            "encoders",
            "all",
        ],
        default="all",
    )
    parser.add_argument(
        "--only",
        nargs="*",
        choices=sorted(EXPERIMENTS),
        metavar="NAME",
        help="experiments (default: the group)",
    )
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    parser.add_argument("--results", type=Path, default=RESULTS, help="JSON file the results are merged into")
    parser.add_argument("overrides", nargs="*", help="extra key=value overrides for every experiment")
    args = parser.parse_args()
    args.out, args.results = args.out.resolve(), args.results.resolve()  # training runs with cwd=ROOT
    # `all` leaves out the MPNet runs: 5-7 h each at 8 epochs on 2 cores
    names = args.only or [
        n
        for n, (g, _, _) in EXPERIMENTS.items()
        if g == args.group or (args.group == "all" and g != "encoders")
    ]
    results = json.loads(args.results.read_text()) if args.results.exists() else {"experiments": {}}
    for name in names:
        print(f"== {name}", flush=True)
        earlier = results["experiments"].get(name, {}).get("hardware")
        exp = results["experiments"][name] = run_experiment(name, args.epochs, args.out, args.overrides)
        results["hardware"] = {
            "machine": platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "torch_threads": torch.get_num_threads(),
            "accelerator": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        }
        # where the run trained: this machine if it trained now, else what was recorded when it did
        if exp["train_wall_seconds_this_invocation"] > 0:
            exp["hardware"] = results["hardware"]
        elif earlier is not None:
            exp["hardware"] = earlier
        save_results(args.results, results)
        print(json.dumps(results["experiments"][name]["val"]), flush=True)


if __name__ == "__main__":
    main()
