"""Tables and plots of ``benchmarks/results/mnre_quality.json`` beside the paper's numbers (issue 7).

Prints Markdown tables (pasted into ``docs/results.md``) and writes the figures to ``docs/img/``.
Only experiments that have been run appear; the paper's numbers are on MNRE *test* with BERT-base,
ViT and GPT-4o-mini explanations, ours on MNRE *val* with the CPU defaults (see docs/results.md).

    python benchmarks/quality_report.py --resamples 1000 --write docs/results.md --readme README.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from common import LABELS, ROOT, replace_block
from common import VAL as VAL_PATH

RESULTS = ROOT / "benchmarks" / "results" / "mnre_quality.json"
# the same experiments at the paper's 8 epochs (issue 17): `mnre_quality.py --epochs 8 --results ...`
LONG_RESULTS = ROOT / "benchmarks" / "results" / "mnre_quality_8ep.json"
LONG = "@8ep"  # suffix of the 8-epoch runs once merged with the 3-epoch ones
VAL = ROOT / VAL_PATH
PROBE = ROOT / "benchmarks" / "results" / "prototype_usage.json"
IMG = ROOT / "docs" / "img"

# Zhang et al., AAAI 2025, MNRE test: Table 2 (accuracy, P, R, F1) and Table 3 (accuracy on US / UT).
PAPER_TABLE2 = {
    "base": (94.61, 90.08, 86.56, 88.29),
    "ent": (95.85, 91.11, 89.69, 90.39),
    "ent-apm": (95.97, 91.57, 90.00, 90.78),
    "ent-rpm": (95.97, 91.22, 90.94, 91.08),
    "full": (96.34, 92.41, 91.25, 91.82),
}
PAPER_TABLE3 = {"HVPNeT": (87.43, 86.94), "TMR": (93.71, 94.49), "PG-MRE": (95.81, 96.00)}
# HVPNeT feeds MNRE's crop dicts and TMR its grounding phrases, both label-carrying (docs/leakage.md);
# PG-MRE's paper does not say which auxiliary inputs its numbers used
PAPER_PROTOCOL = {"HVPNeT": "published protocol", "TMR": "published protocol", "PG-MRE": "inputs not stated"}
ABLATION = [
    "text-only",
    "base",
    "base-seed43",
    "ent-names",
    "ent",
    "ent-seed43",
    "ent-apm",
    "ent-rpm",
    "full",
    "full-seed43",
]
# (A, B): does B beat A? The steps of Table 2, and PG-MRE against both baselines.
PAIRS = [
    # issue 17: the caption as a second text segment
    ("text-only", "text-caption-segment"),
    ("full", "full-caption-segment"),
    ("text-caption-segment", "full-caption-segment"),
    ("base", "base-caption-tokens"),
    ("full", "full-caption-tokens"),
    # issue 16: what the label-carrying phrases add, and what label-free entity types add
    ("text-only", "published-text-only"),
    ("base", "published-base"),
    ("full", "published-full"),
    # what the PG-MRE modules add under each protocol (leak-free: text-only -> base -> full below)
    ("published-text-only", "published-base"),
    ("published-base", "published-full"),
    ("published-text-only", "published-full"),
    ("types-text-only", "types-base"),
    ("types-base", "types-full"),
    ("types-text-only", "types-full"),
    ("text-only", "types-text-only"),
    ("base", "types-base"),
    ("full", "types-full"),
    ("text-only", "base"),
    # issue 17: the larger encoder at the 3-epoch schedule (its 8-epoch runs outlast a session here)
    ("text-only", "text-only-seed43"),
    ("text-only", "mpnet-text-only"),
    ("text-only-seed43", "mpnet-text-only"),
    ("base", "mpnet-text-only"),
    ("mpnet-text-only", "mpnet-full"),
    ("full", "mpnet-full"),
    ("base", "mpnet-full"),
    ("base", "base-bucketed"),
    ("base-seed43", "base-bucketed"),
    ("base-seed43", "base-bucketed-seed43"),
    ("base-bucketed", "base-bucketed-seed43"),
    ("base", "ent"),
    ("base", "base-seed43"),
    ("base", "ent-names"),
    ("ent-names", "ent"),
    ("ent", "ent-apm"),
    ("ent", "ent-rpm"),
    ("ent", "full"),
    ("base", "full"),
    ("text-only", "full"),
    ("ent", "ent-seed43"),
    ("base", "ent-seed43"),
    ("full", "full-seed43"),
    ("full", "full-k8"),
    ("full-seed43", "full-k8"),
    ("base", "full-k8"),
    ("full", "full-k46"),
    ("full", "full-novisual"),
    ("text-only", "full-novisual"),
    ("full", "full-cogvlm"),
    ("full", "full-minicpm"),
    ("full", "full-blip"),
    ("full", "full-refresh100"),
    ("base", "full-refresh100"),
    ("ent", "ent-gate"),
    ("base", "ent-gate"),
    ("full", "full-gate"),
    ("base", "full-gate"),
    ("ent", "ent-shared"),
    ("base", "ent-shared"),
    ("full-k8", "full-k8-seed43"),
    ("full-seed43", "full-k8-seed43"),
    ("base", "full-k8-seed43"),
    ("ent", "ent-xdrop"),
    ("ent-seed43", "ent-xdrop"),
    ("base", "ent-xdrop"),
    ("ent-seed43", "ent-xdrop-seed43"),
    ("base", "ent-xdrop-seed43"),
    ("full", "full-xdrop"),
    ("full-seed43", "full-xdrop"),
    ("base", "full-xdrop"),
    ("text-only", "full-xdrop"),
    ("full-seed43", "full-xdrop-seed43"),
    ("base", "full-xdrop-seed43"),
    ("full-xdrop", "full-xdrop70"),
    ("base", "full-xdrop70"),
    ("ent-xdrop", "ent-xdrop70"),
    ("base", "ent-xdrop70"),
    ("full", "full-literal"),
    ("full-seed43", "full-literal"),
    ("base", "full-literal"),
    ("text-only", "full-literal"),
]


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}"


def ablation_table(exps: dict) -> str:
    rows = [
        "| model | epochs | ours: Acc | P | R | F1 | macro-F1 | paper: Acc | P | R | F1 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in ABLATION:
        if name not in exps:
            continue
        v = exps[name]["val"]
        paper = PAPER_TABLE2.get(name, (None,) * 4)
        ours = [v["accuracy"], v["precision"], v["recall"], v["f1"], v["macro_f1"]]
        cells = [LABELS[name], str(exps[name]["epochs"]), *map(_fmt, ours), *map(_fmt, paper)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


PROTOCOL_ROWS = [
    ("text-only", "published-text-only", "types-text-only"),
    ("base", "published-base", "types-base"),
    ("full", "published-full", "types-full"),
]
AUDIT = ROOT / "benchmarks" / "results" / "leakage_audit.json"


def protocols_table(exps: dict) -> str:
    """Each variant leak-free, under the published protocol and with the honest spaCy types (val micro-F1)."""

    def cell(name: str) -> str:
        if name not in exps:
            return "not run"
        v = exps[name]["val"]
        return f"{v['f1']:.2f} (acc {v['accuracy']:.2f}, {exps[name]['epochs']} ep.)"

    rows = [
        "| variant | leak-free | **published protocol** (label-carrying phrases) | leak-free + spaCy types |",
        "| --- | --- | --- | --- |",
    ]
    for leak_free, published, types in PROTOCOL_ROWS:
        rows.append(f"| {LABELS[leak_free]} | {cell(leak_free)} | {cell(published)} | {cell(types)} |")
    if AUDIT.exists():
        audit = json.loads(AUDIT.read_text())
        rule = next(
            (
                f
                for i in audit["inputs"]
                if i["name"] == "phrases"
                for f in i["features"]
                if f["feature"] == "trailing_items"
            ),
            None,
        )
        if rule is not None:
            rows.append(
                f"| no model: the phrase's type words alone (`pgmre data audit`) | – | "
                f"{rule['f1']:.2f} (acc {rule['accuracy']:.2f}) | – |"
            )
    return "\n".join(rows)


def subsets_table(exps: dict) -> str:
    rows = ["| model | US n | US accuracy | UT n | UT accuracy |", "| --- | --- | --- | --- | --- |"]
    for name in [n for n in LABELS if n in exps]:
        s = exps[name]["subsets"]
        us, ut = s.get("unseen", {}), s.get("untokenizable", {})
        cells = [
            f"ours: {LABELS[name]}",
            str(us.get("n", "–")),
            _fmt(us.get("accuracy")),
            str(ut.get("n", "–")),
            _fmt(ut.get("accuracy")),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    for name, (us_acc, ut_acc) in PAPER_TABLE3.items():
        protocol = PAPER_PROTOCOL[name]
        rows.append(f"| paper (test, {protocol}): {name} | 1241 | {us_acc:.2f} | 1126 | {ut_acc:.2f} |")
    return "\n".join(rows)


def other_table(exps: dict, names: list[str]) -> str:
    rows = [
        "| model | Acc | P | R | F1 | macro-F1 | attr prototypes used | rel prototypes used | gate tanh(g) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in names:
        if name not in exps:
            continue
        v, protos = exps[name]["val"], exps[name].get("prototypes", {})
        used = [
            f"{protos[b]['used']} (ppl {protos[b]['perplexity']:.1f})" if b in protos else "–"
            for b in ("attr", "rel")
        ]
        gates = exps[name].get("guidance_gates") or {}
        gate = ", ".join(f"{slot} {value:.2f}" for slot, value in gates.items()) or "–"
        metrics = [v["accuracy"], v["precision"], v["recall"], v["f1"], v["macro_f1"]]
        rows.append("| " + " | ".join([LABELS[name], *map(_fmt, metrics), *used, gate]) + " |")
    return "\n".join(rows)


# the full model's visual input per run (configs/cpu.yaml: CogVLM for the image slot, 3 object slots)
VISUAL_INPUTS = {
    "full": "CogVLM caption + MiniCPM-V, LLaVA-NeXT, BLIP captions as 3 object slots (default)",
    "full-seed43": "the same, seed 43",
    "full-cogvlm": "CogVLM caption only",
    "full-minicpm": "MiniCPM-V caption only",
    "full-blip": "BLIP caption only",
    "full-novisual": "none (no visual input, hence no RPM)",
}


# how the caption is read (issue 17)
CAPTION_READINGS = {
    "text-only": "text only: no caption",
    "text-caption-segment": "text only + CogVLM caption as a second segment (fine-tuned encoder)",
    "base": "Base: captions as frozen pooled vectors (default)",
    "base-caption-tokens": "Base: CogVLM caption's token states (fine-tuned encoder) as F_V",
    "full": "PG-MRE: captions as frozen pooled vectors (default)",
    "full-caption-segment": "PG-MRE: the same + CogVLM caption as a second segment",
    "full-caption-tokens": "PG-MRE: CogVLM caption's token states (fine-tuned encoder) as F_V",
}


def visual_table(
    exps: dict, inputs: dict[str, str] = VISUAL_INPUTS, what: str = "visual input of the full model"
) -> str:
    """Which caption source (or reading of it) helps, against the same model without it."""
    rows = [
        f"| {what} | Acc | P | R | F1 | US accuracy | UT accuracy |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, what in inputs.items():
        if name not in exps:
            continue
        v, sub = exps[name]["val"], exps[name]["subsets"]
        metrics = [v["accuracy"], v["precision"], v["recall"], v["f1"]]
        subsets = [sub.get("unseen", {}).get("accuracy"), sub.get("untokenizable", {}).get("accuracy")]
        rows.append("| " + " | ".join([what, *map(_fmt, metrics), *map(_fmt, subsets)]) + " |")
    return "\n".join(rows)


def _save(fig: plt.Figure, ax: plt.Axes | None, title: str, out: Path) -> Path:
    """Title the axes (or, with ``ax=None``, the whole figure), then write and close the figure."""
    if ax is None:
        fig.suptitle(title)
    else:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out


def _gold(path: Path) -> list[str]:
    from pgmre.data.mnre import load_samples

    return [s.relation or "" for s in load_samples(path, require_image=False)]


def probe_table(probe: dict) -> str:
    rows = [
        "| setting | steps | attr used | attr perplexity | attr top share | rel used | rel perplexity | rel top share |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    settings = probe["settings"]
    for name in sorted(settings, key=lambda n: (n != "paper", n)):  # the defaults first
        run = settings[name]
        cells = [f"`{name}` " + (" ".join(run["overrides"]) or "(defaults)"), str(run["steps"])]
        for bank in ("attr", "rel"):
            b = run["banks"][bank]
            cells += [f"{b['used']}/{b['of']}", f"{b['perplexity']:.2f}", f"{100 * b['top_share']:.0f}%"]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _predictions(exp: dict) -> list[str]:
    if "val_predictions" in exp:
        return exp["val_predictions"]
    path = ROOT / exp["run_dir"] / "eval-val" / "predictions.jsonl"
    return [json.loads(line)["relation"] for line in path.read_text().splitlines() if line.strip()]


_BOOTSTRAPS: dict[tuple[str, str, int], dict] = {}


def _paired(exps: dict, a: str, b: str, resamples: int, gold: list[str]) -> dict:
    """The paired bootstrap of B against A on val, computed once per pair for both tables."""
    from pgmre.evaluate.significance import paired_bootstrap
    from pgmre.labels import RelationVocab

    key = (a, b, resamples)
    if key not in _BOOTSTRAPS:
        pred_a, pred_b = _predictions(exps[a]), _predictions(exps[b])
        _BOOTSTRAPS[key] = paired_bootstrap(gold, pred_a, pred_b, RelationVocab.mnre(), resamples=resamples)
    return _BOOTSTRAPS[key]


def significance_table(exps: dict, resamples: int, gold: list[str]) -> str:
    rows = [
        "| A → B | F1 A | F1 B | ΔF1 | 95% interval of Δ | p(B not better) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for a, b in PAIRS:
        if a not in exps or b not in exps:
            continue
        r = _paired(exps, a, b, resamples, gold)
        lo, hi = r["delta_95"]
        cells = [
            f"{a} → {b}",
            f"{r['f1_a']:.2f}",
            f"{r['f1_b']:.2f}",
            f"{r['delta']:+.2f}",
            f"[{lo:+.2f}, {hi:+.2f}]",
        ]
        rows.append("| " + " | ".join([*cells, f"{r['p_b_not_better']:.3f}"]) + " |")
    return "\n".join(rows)


def module_effects_table(exps: dict, resamples: int, gold: list[str]) -> str:
    """What each step of the ablation adds under each protocol: ΔF1 with its paired-bootstrap interval."""
    protocols = {
        "leak-free": 0,
        "**published protocol** (label-carrying phrases)": 1,
        "leak-free + spaCy types": 2,
    }
    steps = [("text only → Base", 0, 1), ("Base → PG-MRE", 1, 2), ("text only → PG-MRE", 0, 2)]
    rows = ["| protocol | " + " | ".join(s for s, _, _ in steps) + " |", "| --- | --- | --- | --- |"]
    for protocol, column in protocols.items():
        cells = []
        for _, a_row, b_row in steps:
            a, b = PROTOCOL_ROWS[a_row][column], PROTOCOL_ROWS[b_row][column]
            if a not in exps or b not in exps:
                cells.append("not run")
                continue
            r = _paired(exps, a, b, resamples, gold)
            lo, hi = r["delta_95"]
            cells.append(f"{r['delta']:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        rows.append(f"| {protocol} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def merge_long(exps: dict, long: dict) -> dict:
    """One namespace for both schedules, so the paired bootstrap can compare a run with its longer self."""
    return {**exps, **{name + LONG: exp for name, exp in long.items()}}


# the two batch orders of the 8-epoch runs: the plain shuffled order (the default) and length-bucketed
# batches (`<variant>-bucketed`, the default until the two seeds of `base-bucketed` showed their cost)
ORDERS = {"plain": "", "bucketed": "-bucketed"}
# the variants run at 8 epochs, in report order
SCHEDULE_VARIANTS = [
    "text-only",
    "base",
    "ent",
    "ent-apm",
    "ent-rpm",
    "full",
    "full-xdrop",
    "full-paper-lr",
    "mpnet-text-only",
    "mpnet-full",
]
# (A, B) at 8 epochs, within one batch order: the steps of the ablation, and MPNet against MiniLM
SCHEDULE_STEPS = [
    ("text-only", "base"),
    ("base", "full"),
    ("text-only", "full"),
    ("base", "ent"),
    ("ent", "ent-apm"),
    ("ent", "ent-rpm"),
    ("ent", "full"),
    ("full", "full-xdrop"),
    ("text-only", "full-xdrop"),
    ("base", "full-xdrop"),
    ("full", "full-paper-lr"),
    ("base", "full-paper-lr"),
    ("text-only", "mpnet-text-only"),
    ("base", "mpnet-text-only"),
    ("mpnet-text-only", "mpnet-full"),
    ("full", "mpnet-full"),
    ("base", "mpnet-full"),
]


def _took(exp: dict) -> str:
    """Training time, naming the GPU where a run had one (the rest ran on this project's 2-core CPU)."""
    minutes = f"{sum(exp['epoch_seconds']) / 60:.0f} min"
    accelerator = exp.get("hardware", {}).get("accelerator")
    return f"{minutes} on {accelerator}" if accelerator else minutes


def _gpu_caveat(exps: dict, runs: list[tuple[str, str, str]]) -> str:
    """Names the 8-epoch runs that trained on a GPU: their Δ against a CPU run is not the model's alone."""
    on_gpu = [
        f"{LABELS[variant]} ({exps[name + LONG].get('compute_precision') or 'precision not recorded'})"
        for variant, _, name in runs
        if exps[name + LONG].get("hardware", {}).get("accelerator")
    ]
    if not on_gpu:
        return ""
    return (
        f"; trained on a GPU: {', '.join(on_gpu)}, so a Δ between one of them and a CPU run also "
        "carries the hardware and the precision"
    )


def _delta(r: dict) -> str:
    return f"{r['delta']:+.2f} [{r['delta_95'][0]:+.2f}, {r['delta_95'][1]:+.2f}]"


def _long_runs(exps: dict) -> list[tuple[str, str, str]]:
    """(variant, batch order, name of its 3-epoch run) of every 8-epoch run, in report order."""
    return [
        (variant, order, variant + suffix)
        for variant in SCHEDULE_VARIANTS
        for order, suffix in ORDERS.items()
        if variant + suffix + LONG in exps
    ]


def schedule_table(exps: dict, resamples: int, gold: list[str]) -> str:
    """Each variant at 3 epochs and at the paper's 8, in each batch order: does training longer change
    the ranking, and what does the batch order cost? A variant's Δ 8 − 3 differs in the schedule alone,
    except where its 8-epoch run trained on a GPU (its time names it): then in hardware and precision too."""
    runs = _long_runs(exps)
    if not runs:
        return "(not run)"

    def cell(exp: dict | None) -> str:
        return "not run" if exp is None else f"{exp['val']['f1']:.2f} ({exp['val']['accuracy']:.2f})"

    rows = [
        "| model | batch order | 3 epochs: F1 (acc) | 8 epochs: F1 (acc) | Δ 8 − 3 [95% interval] | "
        "dev F1 per epoch, 8 epochs | best epoch | training time |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for variant, order, name in runs:
        long = exps[name + LONG]
        delta = _delta(_paired(exps, name, name + LONG, resamples, gold)) if name in exps else "–"
        row = [LABELS[variant], order, cell(exps.get(name)), cell(long), delta]
        row.append(" / ".join("–" if f is None else f"{f:.1f}" for f in long["dev_f1_per_epoch"]))
        row.append(str(long["best_epoch"]))
        row.append(_took(long))
        rows.append("| " + " | ".join(row) + " |")
    effects = [
        "| 8 epochs: A → B | batch order | F1 A | F1 B | ΔF1 [95% interval] | p(B not better) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    pairs = [
        (LABELS[a], LABELS[b], order, a + suffix + LONG, b + suffix + LONG)
        for order, suffix in ORDERS.items()
        for a, b in SCHEDULE_STEPS
    ] + [
        (LABELS[v], LABELS[v], "bucketed → plain", v + ORDERS["bucketed"] + LONG, v + LONG)
        for v in SCHEDULE_VARIANTS
    ]
    for label_a, label_b, order, a, b in pairs:
        if a in exps and b in exps:
            r = _paired(exps, a, b, resamples, gold)
            effects.append(
                f"| {label_a} → {label_b} | {order} | {r['f1_a']:.2f} | {r['f1_b']:.2f} | "
                f"{_delta(r)} | {r['p_b_not_better']:.3f} |"
            )
    if len(effects) == 2:
        effects = ["(not run: needs two 8-epoch runs)"]
    return (
        "\n".join(rows) + "\n\nWhat each module, the batch order and the larger encoder change at 8 epochs "
        f"(paired bootstrap on val{_gpu_caveat(exps, runs)}):\n\n" + "\n".join(effects)
    )


# the README's headline: Table 2's rows at the paper's 8 epochs, plain order, then the larger encoder
HEADLINE = ["text-only", "base", "ent", "ent-apm", "ent-rpm", "full", "mpnet-text-only", "mpnet-full"]


def headline_table(long: dict) -> str:
    """The README's results table, from the 8-epoch runs only, so that it cannot drift from the JSON."""
    rows = [
        "| model | micro-F1 | accuracy | US F1 | UT F1 | best epoch | 8 epochs took |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    best = max((long[n]["val"]["f1"] for n in HEADLINE if n in long), default=None)
    for name in HEADLINE:
        if name not in long:
            continue
        exp = long[name]
        f1 = _fmt(exp["val"]["f1"])
        sub = exp["subsets"]
        cells = [
            LABELS[name],
            f"**{f1}**" if exp["val"]["f1"] == best else f1,
            _fmt(exp["val"]["accuracy"]),
            _fmt(sub["unseen"]["f1"]),
            _fmt(sub["untokenizable"]["f1"]),
            str(exp["best_epoch"]),
            _took(exp),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def plot_schedule(exps: dict, out: Path) -> Path | None:
    """Val F1 per epoch of the 8-epoch runs: plain order solid, length-bucketed dashed."""
    runs = _long_runs(exps)
    if not runs:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    colours = {variant: f"C{i}" for i, variant in enumerate(dict.fromkeys(v for v, _, _ in runs))}
    for variant, order, name in runs:
        f1 = exps[name + LONG].get("dev_f1_per_epoch") or []
        style = "o-" if order == "plain" else "s--"
        label = f"{LABELS[variant].split(' (')[0]}, {order}"
        ax.plot(range(1, len(f1) + 1), f1, style, color=colours[variant], label=label, mfc="none")
    ax.set_xticks(range(1, 1 + max(len(exps[n + LONG].get("dev_f1_per_epoch") or []) for _, _, n in runs)))
    ax.set_xlabel("epoch (solid: plain shuffled order; dashed: length-bucketed batches)")
    ax.set_ylabel("val micro-F1 (%)")
    ax.legend(fontsize=7, ncol=2)
    return _save(fig, ax, "The paper's 8 epochs (captions, leak-free)", out)


def plot_ablation(exps: dict, out: Path) -> Path | None:
    names = [n for n in ABLATION if n in exps]
    if not names:
        return None
    fig, ax = plt.subplots(figsize=(7, 3.8))
    xs = range(len(names))
    ax.bar(
        [x - 0.2 for x in xs], [exps[n]["val"]["f1"] for n in names], 0.4, label="pgmre, CPU defaults (val)"
    )
    paper = [PAPER_TABLE2.get(n, (0, 0, 0, 0))[3] for n in names]
    ax.bar([x + 0.2 for x in xs], paper, 0.4, label="paper (test, BERT-base + ViT)", color="tab:gray")
    ticks = [
        LABELS[n].split(" (")[0].replace("Base+", "+").replace(", entity names as explanations", " (names)")
        for n in names
    ]
    ax.set_xticks(list(xs), ticks, fontsize=8, rotation=25, ha="right")
    ax.set_ylabel("micro-F1 (%)")
    ax.set_ylim(0, 115)  # room for the legend above the bars
    ax.set_yticks(range(0, 101, 20))
    ax.legend(loc="upper left", ncol=2, fontsize=8)
    return _save(fig, ax, "Ablation on MNRE (Table 2)", out)


def plot_curves(exps: dict, out: Path) -> Path | None:
    """Val F1 per epoch: the Table 2 runs on the left, the other experiments (k, visual, fixes) on the right."""
    ran = [n for n in LABELS if n in exps and exps[n].get("dev_f1_per_epoch")]
    panels = [
        ("Table 2 runs", [n for n in ran if n in ABLATION]),
        (
            "Other experiments: prototype count, visual source, fixes, controls (PG-MRE = full)",
            [n for n in ran if n not in ABLATION],
        ),
    ]
    panels = [(title, names) for title, names in panels if names]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(6 * len(panels), 4.5), sharey=True, squeeze=False)
    for ax, (title, names) in zip(axes[0], panels, strict=True):
        for i, n in enumerate(names):
            f1 = exps[n]["dev_f1_per_epoch"]
            style = "o-" if i < 10 else "s--"  # the colour cycle repeats after 10 lines
            ax.plot(range(1, len(f1) + 1), f1, style, label=LABELS[n].split(" (")[0])
        ax.set_xticks(range(1, max(len(exps[n]["dev_f1_per_epoch"]) for n in names) + 1))
        ax.set_xlabel("epoch")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("val micro-F1 (%)")
    return _save(fig, None, "Val micro-F1 per epoch", out)


def plot_prototypes(exps: dict, out: Path) -> Path | None:
    """Fig. 4: val F1 of the full model against k = t, with the other seeds and Base for scale."""
    points = [
        (k, exps[n]["val"]["f1"]) for k, n in ((8, "full-k8"), (23, "full"), (46, "full-k46")) if n in exps
    ]
    if len(points) < 2:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot([k for k, _ in points], [f for _, f in points], "o-", label="PG-MRE, seed 42")
    seed43 = [(k, exps[n]["val"]["f1"]) for k, n in ((8, "full-k8-seed43"), (23, "full-seed43")) if n in exps]
    if seed43:
        ax.plot(
            [k for k, _ in seed43],
            [f for _, f in seed43],
            "s",
            color="tab:blue",
            mfc="none",
            label="PG-MRE, seed 43",
        )
    for name, style in (("base", "--"), ("base-seed43", ":")):
        if name in exps:
            ax.axhline(exps[name]["val"]["f1"], color="tab:gray", ls=style, label=LABELS[name].split(" (")[0])
    ax.set_xticks([k for k, _ in points])
    ax.set_xlabel("prototypes k = t (attribute and relation banks)")
    ax.set_ylabel("val micro-F1 (%)")
    ax.legend(fontsize=7)
    return _save(fig, ax, "Prototype count (Fig. 4), 3 epochs", out)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--long-results", type=Path, default=LONG_RESULTS, help="the 8-epoch runs")
    parser.add_argument("--img", type=Path, default=IMG)
    parser.add_argument("--val", type=Path, default=VAL, help="the gold file the runs were scored on")
    parser.add_argument("--resamples", type=int, default=2000, help="paired bootstrap resamples")
    parser.add_argument(
        "--write",
        type=Path,
        help="also replace the quality_tables / probe_table blocks of this Markdown file",
    )
    parser.add_argument(
        "--readme", type=Path, help="also replace the results_headline block of this file (README.md)"
    )
    args = parser.parse_args()
    exps = json.loads(args.results.read_text())["experiments"]
    if args.long_results.exists():
        exps = merge_long(exps, json.loads(args.long_results.read_text())["experiments"])
    args.img.mkdir(parents=True, exist_ok=True)
    gold = _gold(args.val)
    tables = "\n\n".join(
        [
            "#### Ablation (Table 2)\n\n" + ablation_table(exps),
            "#### Unseen / untokenizable entities (Table 3)\n\n" + subsets_table(exps),
            f"#### Paired bootstrap on val micro-F1 ({args.resamples} resamples)\n\n"
            + significance_table(exps, args.resamples, gold),
            "#### Visual source of the full model\n\n" + visual_table(exps),
            "#### How the caption is read\n\n"
            + visual_table(exps, CAPTION_READINGS, "model and caption reading"),
            "#### Protocols: leak-free, published (label-carrying phrases) and spaCy types\n\n"
            + protocols_table(exps)
            + f"\n\nWhat the PG-MRE modules add under each protocol (val micro-F1, Δ and paired-bootstrap 95% "
            f"interval, {args.resamples} resamples):\n\n" + module_effects_table(exps, args.resamples, gold),
            "#### The paper's schedule: 8 epochs against 3\n\n" + schedule_table(exps, args.resamples, gold),
            "#### Prototype usage and guidance gates of the PG-MRE runs\n\n"
            + other_table(exps, [n for n in LABELS if n.startswith("full") or n.endswith("-gate")]),
        ]
    )
    probe = probe_table(json.loads(PROBE.read_text())) if PROBE.exists() else "(not run)"
    print(tables + "\n\n#### Prototype usage probe\n\n" + probe)
    for name, fn in (
        ("quality_ablation.png", plot_ablation),
        ("quality_curves.png", plot_curves),
        ("quality_prototypes.png", plot_prototypes),
        ("quality_schedule.png", plot_schedule),
    ):
        path = fn(exps, args.img / name)
        if path:
            print(f"\nwrote {path}")
    if args.write:
        doc = replace_block(args.write.read_text(), "quality_tables", tables)
        args.write.write_text(replace_block(doc, "probe_table", probe))
        print(f"updated {args.write}")
    if args.readme and args.long_results.exists():
        headline = headline_table(json.loads(args.long_results.read_text())["experiments"])
        args.readme.write_text(replace_block(args.readme.read_text(), "results_headline", headline))
        print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
