"""A Hugging Face-style model card (``README.md``) for a run directory: what was trained, on what, how well."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pgmre.config import Config, protocol_statement

METRICS = ("accuracy", "precision", "recall", "f1", "macro_f1")


def _variant(config: Config) -> str:
    """The modules this run uses, in the paper's Table 2 vocabulary."""
    m = config.model
    parts = ["text"] + [
        name
        for name, on in (
            ("visual", m.use_visual),
            ("Ent", m.use_explanations),
            ("APM", m.use_apm),
            ("RPM", m.use_rpm),
        )
        if on
    ]
    name = " + ".join(parts)
    return f"full PG-MRE ({name})" if len(parts) == 5 else name


def _best_row(history: list[dict[str, Any]], best_epoch: int | None) -> dict[str, Any]:
    """The epoch in ``best/``: the trainer's, else the best dev micro-F1, else (no dev set) the last."""
    for row in history:
        if best_epoch is not None and row.get("epoch") == best_epoch:
            return row
    scored = [r for r in history if "dev_f1" in r]
    if scored:
        return max(scored, key=lambda r: r["dev_f1"])
    return history[-1] if history else {}


def write_model_card(
    run_dir: Path,
    config: Config,
    history: list[dict[str, Any]],
    seconds: float,
    best_epoch: int | None = None,
) -> Path:
    best = _best_row(history, best_epoch)
    if "dev_f1" in best:
        selected = (
            f"selected on dev micro-F1): epoch {best['epoch']},\n  dev micro-F1 {best['dev_f1']:.2f}, "
            f"accuracy {best.get('dev_accuracy', float('nan')):.2f}."
        )
    else:
        selected = f"no dev set to select on: the last epoch): epoch {best.get('epoch', '–')}."
    m = config.model
    banks = [f"k = {m.num_attr_prototypes} attribute"] if m.use_apm else []
    banks += [f"t = {m.num_rel_prototypes} relation"] if m.use_rpm else []
    prototypes = f";\n  {' and '.join(banks)} prototypes" if banks else ""
    cap = config.data.max_train_samples
    subset = f" (its first {cap} samples)" if cap else ""
    ran = history[-1]["epoch"] if history else 0
    epochs = f"{ran} epochs" if ran == config.train.epochs else f"{ran} of {config.train.epochs} epochs"
    rows = "\n".join(
        f"| {r['epoch']} | {r['train_loss']:.4f} | "
        + " | ".join(f"{r[f'dev_{k}']:.2f}" if f"dev_{k}" in r else "–" for k in METRICS)
        + f" | {r['epoch_seconds']:.0f} |"
        for r in history
    )
    used = sorted({str(r["compute_precision"]) for r in history if "compute_precision" in r})
    arithmetic = ", ".join(used) or "unrecorded"
    card = f"""---
library_name: pgmre
tags: [multimodal-relation-extraction, pg-mre, mnre]
---

# PG-MRE run `{run_dir.name}`

- **Protocol**: **{protocol_statement(config)}**.
- **Model**: {_variant(config)}; text encoder `{config.text.encoder}`; visual source `{config.visual.source}`{prototypes}.
- **Data**: train `{config.data.train}`{subset}, dev `{config.data.dev}`.
- **Training**: {epochs}, batch {config.train.batch_size}, lr {config.train.lr}, seed {config.seed};
  arithmetic {arithmetic} (`train.precision: {config.train.precision}`); {seconds / 60:.1f} minutes
  (the last invocation; a resumed run's earlier sessions are in the epoch times below).
  The full configuration is `config.yaml`.
- **Best checkpoint** (`best/`, {selected}

| epoch | train loss | dev accuracy | dev P | dev R | dev micro-F1 | dev macro-F1 | seconds |
| --- | --- | --- | --- | --- | --- | --- | --- |
{rows}

Dev metrics follow the MNRE convention (accuracy over all samples; P/R/F1 micro over samples whose gold
or predicted relation is not `None`), in percent.

## Use

```python
from pgmre import Predictor

predictor = Predictor.from_pretrained("{run_dir}")
print(predictor.predict("text of the post", head="head entity", tail="tail entity"))
```

Or `pgmre evaluate --run {run_dir} --data FILE`, `pgmre predict`, `pgmre serve --run {run_dir}`.
"""
    path = run_dir / "README.md"
    path.write_text(card)
    return path


def history_from(run_dir: Path) -> list[dict[str, Any]]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
