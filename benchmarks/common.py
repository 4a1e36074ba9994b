"""What the benchmark scripts share: the repository root and the ``pgmre train`` command they launch.

Imported by the scripts of this folder, which are run as ``python benchmarks/<name>.py`` (the folder is
then on ``sys.path``). Every MNRE benchmark trains in a subprocess (so its memory and threads are its own) on
``configs/cpu.yaml`` plus overrides; building that command line in one place keeps them comparable.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PGMRE = [sys.executable, "-m", "pgmre.cli"]
MNRE_DIR = "data/mnre"  # relative to ROOT, like configs/cpu.yaml; written by `pgmre data fetch mnre`
TRAIN = f"{MNRE_DIR}/mnre_train.txt"
VAL = f"{MNRE_DIR}/mnre_val.txt"


# the display name of every experiment of mnre_quality.py, in report order
LABELS = {
    "text-only": "Text only (entity markers)",
    "base": "Base",
    "ent": "Base+Ent",
    "ent-apm": "Base+Ent+APM",
    "ent-rpm": "Base+Ent+RPM",
    "full": "Base+Ent+RPM+APM (PG-MRE)",
    "full-k8": "PG-MRE, k = t = 8",
    "full-k46": "PG-MRE, k = t = 46",
    "full-cogvlm": "PG-MRE, CogVLM caption only",
    "full-minicpm": "PG-MRE, MiniCPM-V caption only",
    "full-blip": "PG-MRE, BLIP caption only",
    "full-novisual": "PG-MRE without visual input",
    "full-refresh100": "PG-MRE, k-means refresh every 100 steps",
    "ent-names": "Base+Ent, entity names as explanations (control)",
    "base-seed43": "Base, seed 43 (control)",
    "text-only-seed43": "Text only, seed 43 (control)",
    "base-bucketed": "Base, length-bucketed batches (control)",
    "base-bucketed-seed43": "Base, length-bucketed batches, seed 43 (control)",
    "ent-seed43": "Base+Ent, seed 43 (control)",
    "full-seed43": "PG-MRE, seed 43 (control)",
    "full-literal": "PG-MRE, literal eqs. (9)-(10): attention to C_all' alone",
    "ent-gate": "Base+Ent, gated guidance",
    "full-gate": "PG-MRE, gated guidance",
    "ent-shared": "Base+Ent, explanations through the fine-tuned encoder",
    "full-k8-seed43": "PG-MRE, k = t = 8, seed 43 (control)",
    "ent-xdrop": "Base+Ent, explanation dropout 0.5",
    "full-xdrop": "PG-MRE, explanation dropout 0.5",
    "ent-xdrop-seed43": "Base+Ent, explanation dropout 0.5, seed 43",
    "full-xdrop-seed43": "PG-MRE, explanation dropout 0.5, seed 43",
    "full-xdrop70": "PG-MRE, explanation dropout 0.7",
    "ent-xdrop70": "Base+Ent, explanation dropout 0.7",
    "published-text-only": "Text only + grounding phrases (PUBLISHED PROTOCOL: label-carrying)",
    "published-base": "Base + grounding phrases (PUBLISHED PROTOCOL: label-carrying)",
    "published-full": "PG-MRE + grounding phrases (PUBLISHED PROTOCOL: label-carrying)",
    "types-text-only": "Text only + spaCy entity types (leak-free)",
    "types-base": "Base + spaCy entity types (leak-free)",
    "types-full": "PG-MRE + spaCy entity types (leak-free)",
    "text-caption-segment": "Text only + CogVLM caption as a second segment",
    "full-caption-segment": "PG-MRE + CogVLM caption as a second segment",
    "base-caption-tokens": "Base, CogVLM caption tokens as F_V",
    "full-caption-tokens": "PG-MRE, CogVLM caption tokens as F_V",
    "mpnet-text-only": "Text only, MPNet-base encoder",
    "mpnet-full": "PG-MRE, MPNet-base encoder",
    "full-paper-lr": "PG-MRE, the paper's lr 2e-5 for every parameter",
}


def train_command(
    variant: str, run_dir: Path, *overrides: str, config: str = "configs/cpu.yaml"
) -> list[str]:
    """``pgmre train`` of a named variant into ``run_dir``, with ``key=value`` overrides."""
    return [*PGMRE, "train", "--config", config, "--variant", variant, "--run-dir", str(run_dir), *overrides]


def save_results(path: Path, results: dict) -> None:
    """Write a benchmark's JSON results, stamped with the time, after every finished unit of work."""
    results["updated"] = time.strftime("%Y-%m-%d %H:%M:%S")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=1))


def replace_block(doc: str, name: str, text: str) -> str:
    """Put ``text`` between ``<!-- name -->`` and ``<!-- /name -->`` of a Markdown document (markers kept)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    if start not in doc or end not in doc:
        raise SystemExit(f"the document has no {start} ... {end} block")
    head, rest = doc.split(start, 1)
    return f"{head}{start}\n{text}\n{end}{rest.split(end, 1)[1]}"
