"""The label-leakage audit of MNRE's auxiliary inputs (docs/leakage.md), MNRE train -> val.

Runs ``pgmre data audit`` on the grounding phrases and HVPNeT crop dicts as CAMIM publishes them
(``../shared/data/upstream``) and on the four caption sources, and saves its audit.json / audit.md as
``results/leakage_audit.json`` / ``.md`` with the command and the wall time. Exit 3 from the audit (a leak)
is the expected outcome here. Usage: ``python benchmarks/leakage_audit.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PGMRE, ROOT, TRAIN, VAL

UPSTREAM = "../shared/data/upstream/zefanZhang-cn/CAMIM/CAMIM/data/txt"
CAPTIONS = "../shared/data/mnre/captions"
INPUTS = [
    f"phrases={UPSTREAM}/phrase_text_{{split}}.json",
    f"crops={UPSTREAM}/mre_{{split}}_dict.pth",
    *(
        f"captions:{source}={CAPTIONS}/{source}_{{split}}.json"
        for source in ("cogvlm", "minicpm", "llavanext", "blip")
    ),
]
RESULTS = ROOT / "benchmarks" / "results"


def main() -> int:
    with tempfile.TemporaryDirectory() as out:
        command = [*PGMRE, "data", "audit", "--train", TRAIN, "--eval", VAL, "--out", out]
        for spec in INPUTS:
            command += ["--aux", spec]
        start = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, check=False)
        seconds = round(time.perf_counter() - start, 1)
        if done.returncode not in (0, 3):
            return done.returncode
        report = json.loads((Path(out) / "audit.json").read_text())
        markdown = (Path(out) / "audit.md").read_text()
    shown = ["pgmre", *command[len(PGMRE) :]]
    shown[shown.index("--out") + 1] = "OUT"
    report = {"command": " ".join(shown), "exit_code": done.returncode, "wall_seconds": seconds, **report}
    (RESULTS / "leakage_audit.json").write_text(json.dumps(report, indent=1) + "\n")
    (RESULTS / "leakage_audit.md").write_text(
        markdown
        + f"\nCommand (exit {done.returncode}, {seconds} s on 2 CPU cores):\n\n```\n{report['command']}\n```\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
