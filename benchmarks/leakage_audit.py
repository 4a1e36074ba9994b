"""The label-leakage audit of MNRE's auxiliary inputs (docs/leakage.md), MNRE train -> val.

Runs ``pgmre data audit`` on the grounding phrases and HVPNeT crop dicts as CAMIM publishes them and on
the four caption sources, and saves its audit.json / audit.md as ``results/leakage_audit.json`` / ``.md``
with the command and the wall time. Exit 3 from the audit (a leak) is the expected outcome here.

Usage: ``python benchmarks/leakage_audit.py [AUX_DIR]``. The data is the layout ``pgmre data fetch mnre
--aux`` writes, plus the spaCy entity-type phrases of ``pgmre data phrases`` (the honest control); AUX_DIR (default ``data/mnre/aux``) holds ``phrase_text_{split}.json`` and
``mre_{split}_dict.pth``, e.g. ``../shared/data/upstream/zefanZhang-cn/CAMIM/CAMIM/data/txt``, the same bytes.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import MNRE_DIR, PGMRE, ROOT, TRAIN, VAL

CAPTION_SOURCES = ("cogvlm", "minicpm", "llavanext", "blip")
RESULTS = ROOT / "benchmarks" / "results"


def aux_specs(aux_dir: str) -> list[str]:
    """The ``--aux`` arguments: phrases, crop dicts, and the captions ``pgmre data fetch mnre`` converts."""
    return [
        f"phrases={aux_dir}/phrase_text_{{split}}.json",
        f"crops={aux_dir}/mre_{{split}}_dict.pth",
        *(f"captions:{s}={MNRE_DIR}/captions/{s}_{{split}}.json" for s in CAPTION_SOURCES),
        # the honest control: `pgmre data phrases --data TRAIN --data VAL --out data/mnre/types/spacy_{split}.json`
        f"phrases:spacy-types={MNRE_DIR}/types/spacy_{{split}}.json",
    ]


def main() -> int:
    aux_dir = sys.argv[1] if len(sys.argv) > 1 else f"{MNRE_DIR}/aux"
    with tempfile.TemporaryDirectory() as out:
        command = [*PGMRE, "data", "audit", "--train", TRAIN, "--eval", VAL, "--out", out]
        for spec in aux_specs(aux_dir):
            command += ["--aux", spec]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, check=False)
        seconds = round(time.perf_counter() - start, 1)
        child = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu_seconds = round(child.ru_utime + child.ru_stime, 1)
        if done.returncode not in (0, 3):
            return done.returncode
        report = json.loads((Path(out) / "audit.json").read_text())
        markdown = (Path(out) / "audit.md").read_text()
    shown = ["pgmre", *command[len(PGMRE) :]]
    shown[shown.index("--out") + 1] = "OUT"
    load = round(os.getloadavg()[0], 1)
    timing = {
        "wall_seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "load_average": load,
        "cpus": os.cpu_count(),
    }
    report = {"command": " ".join(shown), "exit_code": done.returncode, **timing, **report}
    (RESULTS / "leakage_audit.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "leakage_audit.md").write_text(
        markdown
        + f"\nCommand (exit {done.returncode}; {seconds} s wall, {cpu_seconds} s CPU on {os.cpu_count()} "
        f"cores at load average {load}):\n\n```\n{report['command']}\n```\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
