"""The README's headline results must be the ones in the committed benchmark JSON, not a hand copy."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))  # the benchmark scripts import their `common` as a sibling

import quality_report  # noqa: E402


def _block(doc: str, name: str) -> str:
    start, end = f"<!-- {name} -->\n", f"\n<!-- /{name} -->"
    assert start in doc and end in doc, f"README.md has no {name} block"
    return doc.split(start, 1)[1].split(end, 1)[0]


def test_readme_headline_is_generated_from_the_8_epoch_results() -> None:
    runs = json.loads(quality_report.LONG_RESULTS.read_text())["experiments"]
    readme = (ROOT / "README.md").read_text()
    assert _block(readme, "results_headline") == quality_report.headline_table(runs), (
        "README.md's results table differs from benchmarks/results/mnre_quality_8ep.json: "
        "run `python benchmarks/quality_report.py --write docs/results.md --readme README.md`"
    )


def test_headline_marks_the_best_run_and_skips_runs_not_made() -> None:
    def run(f1: float) -> dict:
        sub = {"f1": f1 - 1}
        return {
            "val": {"f1": f1, "accuracy": 70.0},
            "subsets": {"unseen": sub, "untokenizable": sub},
            "best_epoch": 3,
            "epoch_seconds": [600.0, 600.0],
        }

    table = quality_report.headline_table({"base": run(60.0), "full": run(55.5)}).splitlines()
    assert len(table) == 4  # header, rule, the two runs made
    assert "| Base | **60.00** | 70.00 | 59.00 | 59.00 | 3 | 20 min |" in table
    assert any(line.startswith("| Base+Ent+RPM+APM (PG-MRE) | 55.50 |") for line in table)


def test_headline_names_the_gpu_a_run_trained_on() -> None:
    """GPU minutes beside CPU minutes would read as a speed-up of the model: the row says where it ran."""
    sub = {"f1": 50.0}
    cpu = {
        "val": {"f1": 51.0, "accuracy": 70.0},
        "subsets": {"unseen": sub, "untokenizable": sub},
        "best_epoch": 2,
        "epoch_seconds": [300.0, 300.0],
    }  # no `hardware`: as the runs recorded before it was
    gpu = {
        **cpu,
        "val": {"f1": 52.0, "accuracy": 70.0},
        "epoch_seconds": [30.0, 30.0],
        "hardware": {"accelerator": "NVIDIA H200"},
    }
    table = quality_report.headline_table({"base": cpu, "mpnet-full": gpu})
    assert "| Base | 51.00 | 70.00 | 50.00 | 50.00 | 2 | 10 min |" in table
    assert (
        "| PG-MRE, MPNet-base encoder | **52.00** | 70.00 | 50.00 | 50.00 | 2 | 1 min on NVIDIA H200 |"
        in table
    )
