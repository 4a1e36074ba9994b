"""``pgmre data audit`` and ``audit_aux_inputs``: planted leaks are flagged, label-free inputs pass.

The data is synthetic MNRE-format text; the auxiliary files are written here, keyed as TMR/CAMIM
(0-based line numbers) and HVPNeT (line numbers, ``.pth``) key theirs, or by img_id as captions are.
"""

from __future__ import annotations

import json
import pickle
import random
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from pgmre.cli import app
from pgmre.data.audit import AuxInput, AuxInputError, audit_aux_inputs
from pgmre.data.mnre import load_samples
from pgmre.data.synthetic import SyntheticDataset, make_synthetic_dataset
from pgmre.data.types import Sample

runner = CliRunner()

TYPE_WORDS = {"per": "person", "org": "organization", "loc": "location", "misc": "miscellaneous"}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> SyntheticDataset:
    """Enough samples (400 train, 200 dev) for per-value majorities; tiny images keep it fast."""
    root = tmp_path_factory.mktemp("audit_data")
    return make_synthetic_dataset(root, n_train=400, n_dev=200, n_test=0, seed=3, image_size=16)


def _samples(ds: SyntheticDataset) -> dict[str, list[Sample]]:
    return {"train": load_samples(ds.train), "dev": load_samples(ds.dev)}


def _leaky_phrase(sample: Sample) -> str:
    """TMR/CAMIM style: the entity names, then type words only when the relation is not None."""
    names = f"{sample.head.name} {sample.tail.name}"
    if sample.relation == "None":
        return names
    _, head_type, tail_type, _ = (sample.relation or "").split("/")
    return f"{names} {TYPE_WORDS[head_type]} {TYPE_WORDS[tail_type]}"


def _clean_phrase(sample: Sample, rng: random.Random) -> str:
    """The same shape, type words drawn without looking at the label."""
    words = rng.sample(sorted(TYPE_WORDS.values()), rng.randint(0, 2))
    return " ".join([sample.head.name, sample.tail.name, *words])


def _leaky_crops(index: int, sample: Sample, rng: random.Random) -> list[str]:
    """HVPNeT style: exactly 2 crops for None, 3 or 4 otherwise."""
    count = 2 if sample.relation == "None" else rng.choice((3, 4))
    return [f"{index}_crop_{k}.png" for k in range(count)]


def _write_per_line(
    root: Path, name: str, splits: dict[str, list[Sample]], value: Any, suffix: str = "json"
) -> str:
    """One file per split keyed by 0-based line number; returns the ``{split}`` template."""
    rng = random.Random(name)
    root.mkdir(parents=True, exist_ok=True)
    for split, samples in splits.items():
        data = {i: value(i, s, rng) for i, s in enumerate(samples)}
        path = root / f"{name}_{split}.{suffix}"
        if suffix == "pth":
            torch.save(data, path)
        else:
            path.write_text(json.dumps({str(k): v for k, v in data.items()}))
    return str(root / f"{name}_{{split}}.{suffix}")


def _audit_cli(ds: SyntheticDataset, out: Path, *aux: str, extra: tuple[str, ...] = ()) -> Any:
    args = ["data", "audit", "--train", str(ds.train), "--eval", str(ds.dev), "--out", str(out)]
    for spec in aux:
        args += ["--aux", spec]
    return runner.invoke(app, [*args, *extra])


def test_planted_leaks_are_flagged_and_clean_inputs_pass(tmp_path: Path, dataset: SyntheticDataset) -> None:
    splits = _samples(dataset)
    leaky_phrases = _write_per_line(tmp_path, "phrases", splits, lambda i, s, rng: _leaky_phrase(s))
    leaky_crops = _write_per_line(tmp_path, "crops", splits, _leaky_crops, suffix="pth")
    clean_phrases = _write_per_line(tmp_path, "clean", splits, lambda i, s, rng: _clean_phrase(s, rng))
    clean_crops = _write_per_line(
        tmp_path, "clean_crops", splits, lambda i, s, rng: [f"{i}_{k}.png" for k in range(rng.randint(2, 4))]
    )
    inputs = [
        AuxInput("phrases", leaky_phrases, "leaky phrases"),
        AuxInput("crops", leaky_crops, "leaky crops"),
        AuxInput("phrases", clean_phrases, "clean phrases"),
        AuxInput("crops", clean_crops, "clean crops"),
    ]
    report = audit_aux_inputs(splits["train"], splits["dev"], inputs)

    flagged = {(f.input, f.feature, f.metric) for f in report.flagged}
    assert ("leaky phrases", "trailing_items", "micro_f1") in flagged
    assert ("leaky phrases", "trailing_items", "separation") in flagged
    assert ("leaky crops", "count", "separation") in flagged
    assert report.flagged_inputs == ["leaky crops", "leaky phrases"]

    by_name = {aux.name: aux for aux in report.inputs}
    assert set(by_name["leaky phrases"].vocabulary) >= {"person", "location"}
    phrase_rule = next(f for f in by_name["leaky phrases"].features if f.feature == "trailing_items")
    assert phrase_rule.separation == 100.0 and phrase_rule.f1 > 60  # per-per is couple or peer
    crop_rule = next(f for f in by_name["leaky crops"].features if f.feature == "count")
    assert crop_rule.separation == 100.0
    # The controls have the same features, drawn without the label: nothing beats the baseline by much.
    for name in ("clean phrases", "clean crops"):
        for feature in by_name[name].features:
            assert feature.f1 < 20 and feature.separation < report.baseline.separation + 8, (name, feature)
    assert by_name["leaky phrases"].coverage == {"train": 100.0, "eval": 100.0}
    assert report.baseline.f1 == 0.0 and report.protocol == "train -> eval"


def test_cli_exit_3_names_the_leak_and_writes_reports(tmp_path: Path, dataset: SyntheticDataset) -> None:
    splits = _samples(dataset)
    phrases = _write_per_line(tmp_path / "aux", "phrase_text", splits, lambda i, s, rng: _leaky_phrase(s))
    crops = _write_per_line(tmp_path / "aux", "mre_dict", splits, _leaky_crops, suffix="pth")
    out = tmp_path / "out"
    result = _audit_cli(dataset, out, f"phrases={phrases}", f"crops={crops}")

    assert result.exit_code == 3, result.output
    assert "input 'phrases', feature 'trailing_items'" in result.stderr
    assert "input 'crops', feature 'count'" in result.stderr
    assert "LEAK" in result.stdout and "majority baseline" in result.stdout
    saved = json.loads((out / "audit.json").read_text())
    assert {f["input"] for f in saved["flagged"]} == {"phrases", "crops"}
    assert saved["inputs"][0]["files"]["eval"] == [str(tmp_path / "aux" / "phrase_text_dev.json")]
    markdown = (out / "audit.md").read_text()
    assert "| phrases | trailing_items |" in markdown and "LEAK" in markdown
    assert not list(out.glob(".*tmp")), "no temporary files left behind"


def test_cli_clean_inputs_exit_0(tmp_path: Path, dataset: SyntheticDataset) -> None:
    splits = _samples(dataset)
    phrases = _write_per_line(tmp_path, "clean", splits, lambda i, s, rng: _clean_phrase(s, rng))
    result = _audit_cli(dataset, tmp_path / "out", f"phrases={phrases}")
    assert result.exit_code == 0, result.output
    assert result.stderr == ""
    assert json.loads((tmp_path / "out" / "audit.json").read_text())["flagged"] == []


def test_thresholds_are_configurable(tmp_path: Path, dataset: SyntheticDataset) -> None:
    """A threshold above what the leak reaches passes it; the measured values do not change."""
    splits = _samples(dataset)
    crops = _write_per_line(tmp_path, "crops", splits, _leaky_crops, suffix="pth")
    strict = _audit_cli(dataset, tmp_path / "a", f"crops={crops}")
    relaxed = _audit_cli(dataset, tmp_path / "b", f"crops={crops}", extra=("--max-separation", "100"))
    assert strict.exit_code == 3 and relaxed.exit_code == 0, relaxed.output
    both = [json.loads((tmp_path / d / "audit.json").read_text()) for d in ("a", "b")]
    assert both[0]["inputs"] == both[1]["inputs"]
    assert both[1]["thresholds"]["max_separation"] == 100.0


def test_captions_keyed_by_img_id(tmp_path: Path, dataset: SyntheticDataset) -> None:
    """Captions of both splits in one file keyed by img_id (with or without extension) serve both sides."""
    splits = _samples(dataset)
    rng = random.Random(0)
    images = {s.img_id for samples in splits.values() for s in samples if s.img_id}
    captions = {}
    for k, img_id in enumerate(sorted(images)):
        key = img_id if k % 2 else img_id.rsplit(".", 1)[0]
        captions[key] = " ".join(rng.choice(["a", "photo", "of", "people", "at", "night"]) for _ in range(8))
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(captions))

    report = audit_aux_inputs(splits["train"], splits["dev"], [AuxInput("captions", str(path))])
    assert report.flagged == []
    assert report.inputs[0].coverage == {"train": 100.0, "eval": 100.0}
    assert report.inputs[0].files == {"train": [str(path)], "eval": [str(path)]}

    # Captions that end with the type words of the post's first pair (as a grounding toolkit given the
    # label would write them) are caught the same way, although a post's other pairs are None.
    first: dict[str, Sample] = {}
    for sample in splits["train"] + splits["dev"]:
        first.setdefault(sample.img_id or "", sample)
    path.write_text(json.dumps({img: _leaky_phrase(first[img]) for img in images}))
    result = _audit_cli(dataset, tmp_path / "out", f"captions:mine={path}")
    assert result.exit_code == 3 and "input 'captions:mine', feature 'trailing_items'" in result.stderr


def test_json_kind_and_cross_validation_without_eval(tmp_path: Path, dataset: SyntheticDataset) -> None:
    """Any JSON keyed by line with numbers; without --eval the rules are scored by 5-fold CV on train."""
    train = load_samples(dataset.train)
    score_file = tmp_path / "scores.json"
    score_file.write_text(json.dumps({str(i): float(s.relation != "None") for i, s in enumerate(train)}))
    report = audit_aux_inputs(train, None, [AuxInput("json", str(score_file), "scores")])
    assert report.protocol == "5-fold cross-validation on train" and report.n_eval == len(train)
    assert [(f.feature, f.metric) for f in report.flagged] == [("value", "separation")]
    assert report.inputs[0].features[-1].separation == 100.0

    random_scores = random.Random(1)
    score_file.write_text(json.dumps({str(i): random_scores.random() for i in range(len(train))}))
    assert audit_aux_inputs(train, None, [AuxInput("json", str(score_file))]).flagged == []


def test_bad_aux_files_exit_2_naming_the_file(tmp_path: Path, dataset: SyntheticDataset) -> None:
    broken = tmp_path / "broken_train.json"
    broken.write_text('{"0": "a phrase", ')
    (tmp_path / "broken_dev.json").write_text("{}")
    result = _audit_cli(dataset, tmp_path / "out", f"phrases={tmp_path / 'broken_{split}.json'}")
    assert result.exit_code == 2 and str(broken) in result.stderr

    missing = _audit_cli(dataset, tmp_path / "out", f"phrases={tmp_path / 'nope_{split}.json'}")
    assert missing.exit_code == 2 and "nope_train.json" in missing.stderr

    wrong_values = tmp_path / "values_{split}.json"
    for split in ("train", "dev"):
        Path(str(wrong_values).replace("{split}", split)).write_text(json.dumps({"0": ["not", "a phrase"]}))
    wrong = _audit_cli(dataset, tmp_path / "out", f"phrases={wrong_values}")
    assert wrong.exit_code == 2 and "values_train.json" in wrong.stderr and "'0'" in wrong.stderr

    not_torch = tmp_path / "crops.pth"
    not_torch.write_bytes(b"not a torch file")
    garbage = _audit_cli(dataset, tmp_path / "out", f"crops={not_torch}")
    assert garbage.exit_code == 2 and str(not_torch) in garbage.stderr

    a_file = tmp_path / "a_file"
    a_file.write_text("keep me")
    clash = _audit_cli(dataset, a_file, f"phrases={tmp_path / 'broken_{split}.json'}")
    assert clash.exit_code == 2 and "--out" in clash.stderr and a_file.read_text() == "keep me"

    bad_spec = _audit_cli(dataset, tmp_path / "out", "weights=some.json")
    assert bad_spec.exit_code == 2 and "KIND[:NAME]=PATH" in bad_spec.stderr
    assert not (tmp_path / "out").exists(), "nothing is written for bad input"


class _Trap:
    """Unpickling this runs code: it creates ``marker``. A safe loader must refuse it."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (str(self.marker), "w"))


def test_crop_dict_with_code_is_refused_without_running_it(tmp_path: Path, dataset: SyntheticDataset) -> None:
    marker = tmp_path / "code_ran"
    evil = tmp_path / "evil.pth"
    with evil.open("wb") as handle:
        pickle.dump({0: _Trap(marker)}, handle, protocol=2)
    result = _audit_cli(dataset, tmp_path / "out", f"crops={evil}")
    assert result.exit_code == 2 and str(evil) in result.stderr
    assert not marker.exists()


def test_line_keyed_file_cannot_serve_both_splits(tmp_path: Path, dataset: SyntheticDataset) -> None:
    path = tmp_path / "phrases.json"
    path.write_text(json.dumps({str(i): "x person" for i in range(400)}))
    result = _audit_cli(dataset, tmp_path / "out", f"phrases={path}")
    assert result.exit_code == 2 and "{split}" in result.stderr and str(path) in result.stderr
    # A file that lists none of the training samples is the wrong file, not a clean input.
    other = tmp_path / "other.json"
    other.write_text(json.dumps({"not_an_image_of_this_data": "x"}))
    with pytest.raises(AuxInputError, match="lists none of the"):
        audit_aux_inputs(load_samples(dataset.train), None, [AuxInput("captions", str(other))])


def test_bad_record_exit_2_with_file_and_line(tmp_path: Path, dataset: SyntheticDataset) -> None:
    lines = dataset.train.read_text().splitlines()
    lines[6] = "{'token': "
    bad = tmp_path / "train.txt"
    bad.write_text("\n".join(lines) + "\n")
    phrases = tmp_path / "p.json"
    phrases.write_text("{}")
    result = runner.invoke(app, ["data", "audit", "--train", str(bad), "--aux", f"phrases={phrases}"])
    assert result.exit_code == 2 and f"{bad}:7:" in result.stderr


def test_config_inputs_are_audited_by_their_config_keys(tmp_path: Path, dataset: SyntheticDataset) -> None:
    """What ``pgmre train`` audits: the phrases, crop dict and captions the configured model reads."""
    from pgmre.config import config_from_dict
    from pgmre.data.audit import aux_inputs_from_config

    splits = _samples(dataset)
    phrases = _write_per_line(tmp_path, "phrases", splits, lambda i, s, rng: _leaky_phrase(s))
    raw = {
        "data": {"train": str(dataset.train), "dev": str(dataset.dev)},
        "text": {"phrases": phrases},
        "visual": {
            "source": "caption",
            "num_objects": 1,
            "captions": {"image": str(dataset.captions_a), "objects": [str(dataset.captions_b)]},
        },
    }
    inputs = aux_inputs_from_config(config_from_dict(raw))
    assert [(a.name, a.kind) for a in inputs] == [
        ("text.phrases", "phrases"),
        ("visual.captions.image", "captions"),
        ("visual.captions.objects[0]", "captions"),
    ]
    report = audit_aux_inputs(splits["train"], None, inputs)
    assert "text.phrases" in report.flagged_inputs
    assert report.inputs[1].coverage == {"train": 100.0}

    raw["model"] = {"use_visual": False, "use_rpm": False}
    assert [a.name for a in aux_inputs_from_config(config_from_dict(raw))] == ["text.phrases"]
