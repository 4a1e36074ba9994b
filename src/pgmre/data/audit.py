"""Label-leakage audit of per-sample auxiliary inputs: grounding phrases, crop dicts, captions, any keyed JSON.

Why: MNRE's published auxiliary files carry the gold label (docs/leakage.md), and a model that reads them
learns the label, not the post. For each input the audit derives features that hold no content of the
post (presence, counts, lengths, the trailing vocabulary items such as entity-type words), fits the most
trivial rule on the training split (the majority relation per feature value) and scores it on the
evaluation split with the project's scorer. It also measures how well each feature alone separates
``None`` from the other relations. A feature whose trivial rule scores like a trained model is flagged.
Pure counting: seconds on MNRE's 12k samples.
"""

from __future__ import annotations

import bisect
import json
import string
from collections import Counter
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgmre.data.keyed import SampleKeyedTable, read_json_object
from pgmre.data.phrases import PhraseFileError, load_phrases
from pgmre.data.types import Sample
from pgmre.encoders.captions import CaptionFileError, CaptionTable
from pgmre.encoders.crops import CropIndexError, load_crop_index
from pgmre.encoders.paths import PLACEHOLDER, InputPathError, expand
from pgmre.evaluate.metrics import score
from pgmre.labels import NEGATIVE_LABEL, RelationVocab
from pgmre.outputs import write_text_atomic

if TYPE_CHECKING:
    from pgmre.config import Config

#: ``phrases``: TMR/CAMIM grounding phrases; ``crops``: HVPNeT crop dicts; ``captions``: ``{img_id: text}``;
#: ``json``: any JSON object keyed by 0-based line number or img_id.
AUX_KINDS = ("phrases", "crops", "captions", "json")

#: Feature values for samples the rule cannot describe.
NOT_APPLICABLE = "n/a"
RARE = "<rare>"
OTHER = "<other>"
#: The two classes of the None / non-None separation.
_RELATION = "relation"
_BINARY_VOCAB = RelationVocab({NEGATIVE_LABEL: 0, _RELATION: 1})
_PUNCTUATION = string.punctuation + "“”‘’…"


class AuxInputError(ValueError):
    """An auxiliary file that cannot be read, or that does not fit the samples it is audited with."""


class LabelLeakError(ValueError):
    """A run labelled leak-free would read an input that predicts the label on its own (docs/leakage.md)."""


@dataclass(frozen=True)
class AuditThresholds:
    """When a feature counts as label-predictive, and how rare values are handled.

    A feature is flagged when its rule's None/non-None ``separation`` accuracy exceeds ``max_separation``
    or its micro-F1 exceeds ``max_f1`` (percentages), and in each case beats the majority baseline.
    Feature values seen fewer than ``min_count`` times in train are merged into one ``<rare>`` value, so
    the rule cannot memorise single samples; a word is a trailing vocabulary item when it ends at least
    ``min_count`` and ``vocab_min_share`` of the training values.
    """

    max_separation: float = 90.0
    max_f1: float = 30.0
    min_count: int = 10
    vocab_min_share: float = 0.01
    folds: int = 5


@dataclass
class AuxInput:
    """One auxiliary input of a given kind: a file, or a template with ``{split}`` for one file per split.

    A list of templates is read as one input (their keys merged), as a config's caption list is.
    """

    kind: str
    template: str | list[str]
    name: str = ""

    def __post_init__(self) -> None:
        if self.kind not in AUX_KINDS:
            raise AuxInputError(
                f"unknown auxiliary input kind {self.kind!r}; use one of {', '.join(AUX_KINDS)}"
            )
        self.name = self.name or self.kind

    @property
    def templates(self) -> list[str]:
        return [self.template] if isinstance(self.template, str) else list(self.template)

    @property
    def per_split(self) -> bool:
        return all(PLACEHOLDER in t for t in self.templates)

    def read(self, samples: Sequence[Sample], split: str) -> SplitValues:
        """Each sample's value (None when the input does not list it), with the files read."""
        try:
            if self.kind == "captions":
                return _caption_values(self.templates, samples, split)
            paths = [path for template in self.templates for path in expand(template, split)]
            loader = {"phrases": _phrase_lookup, "crops": _crop_lookup, "json": _json_lookup}[self.kind]
            lookups = [loader(path) for path in paths]
        except InputPathError as err:
            raise AuxInputError(f"{self.name}: {err}") from None
        except (PhraseFileError, CropIndexError, CaptionFileError) as err:
            raise AuxInputError(str(err)) from None
        values = []
        for sample in samples:
            values.append(next((v for lookup, _ in lookups if (v := lookup(sample)) is not None), None))
        return SplitValues(values, [str(p) for p in paths], any(by_line for _, by_line in lookups))


def aux_inputs_from_config(config: Config) -> list[AuxInput]:
    """The auxiliary inputs a run's model reads, named by their config keys (what ``pgmre train`` audits)."""
    inputs = []
    if config.text.phrases:
        inputs.append(AuxInput("phrases", config.text.phrases, "text.phrases"))
    visual = config.visual
    uses_crops = visual.source == "image" and visual.num_objects > 0
    if config.model.use_visual and uses_crops and visual.crops.index:
        inputs.append(AuxInput("crops", visual.crops.index, "visual.crops.index"))
    if config.model.use_visual and visual.source == "caption":
        if visual.captions.image:
            inputs.append(AuxInput("captions", visual.captions.image, "visual.captions.image"))
        for i, objects in enumerate(visual.captions.objects[: visual.num_objects]):
            inputs.append(AuxInput("captions", objects, f"visual.captions.objects[{i}]"))
    return inputs


@dataclass
class SplitValues:
    """The values of one input for the samples of one split."""

    values: list[Any]
    files: list[str]
    keyed_by_line: bool = False

    @property
    def coverage(self) -> float:
        return sum(v is not None for v in self.values) / len(self.values) if self.values else 0.0


Lookup = Callable[[Sample], Any]


def _phrase_lookup(path: Path) -> tuple[Lookup, bool]:
    table = load_phrases(path)
    return table.lookup, bool(table.by_line)


def _crop_lookup(path: Path) -> tuple[Lookup, bool]:
    index = load_crop_index(path)
    return index.lookup, index.keyed_by_line


def _json_lookup(path: Path) -> tuple[Lookup, bool]:
    if path.suffix.lower() != ".json":
        raise AuxInputError(
            f"{path}: the json kind reads a JSON object; for an HVPNeT .pth crop dict use crops="
        )
    table: SampleKeyedTable[Any] = SampleKeyedTable(str(path))
    for key, value in read_json_object(path, AuxInputError, "per-sample JSON").items():
        table.add(key, value)
    return table.lookup, table.keyed_by_line


def _caption_values(template: list[str], samples: Sequence[Sample], split: str) -> SplitValues:
    table = CaptionTable(template, split)
    values = [table.get(s.img_id) if s.img_id is not None else None for s in samples]
    return SplitValues(values, [str(p) for p in table.files])


# ---------------------------------------------------------------------------------------------- features


def _word(token: str) -> str:
    """A token lower-cased without surrounding punctuation (so ``image.`` and ``Image`` are one word)."""
    return token.strip(_PUNCTUATION).lower()


def _last_words(text: str) -> Iterator[str]:
    """The words of ``text`` from the last one backwards (lazily: captions are long, only the end counts)."""
    for token in reversed(text.split()):
        if word := _word(token):
            yield word


def post_words(samples: Sequence[Sample]) -> list[frozenset[str]]:
    """Each sample's post as a set of words: what a trailing vocabulary item must not come from."""
    cache: dict[tuple[str, ...], frozenset[str]] = {}
    out = []
    for sample in samples:
        if sample.tokens not in cache:
            cache[sample.tokens] = frozenset(w for t in sample.tokens if (w := _word(t)))
        out.append(cache[sample.tokens])
    return out


def _bucket(n: int) -> str:
    """Exact small counts, wider buckets for large ones (lengths and list sizes)."""
    if n <= 10:
        return str(n)
    for upper in (15, 20, 30, 50, 100):
        if n <= upper:
            return f"<={upper}"
    return ">100"


def _kind_of(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str):
        return "text"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, list | tuple):
        return "list"
    return "other"


def _presence(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, str | list | tuple | dict) and not (
        value.strip() if isinstance(value, str) else value
    ):
        return "empty"
    return "present"


@dataclass
class _TrailingVocabulary:
    """Words that end many training values without coming from the post: entity-type words, for one."""

    items: frozenset[str]

    @classmethod
    def fit(
        cls, values: Sequence[Any], posts: Sequence[frozenset[str]], thresholds: AuditThresholds
    ) -> _TrailingVocabulary:
        last: Counter[str] = Counter()
        for value, post in zip(values, posts, strict=True):
            if isinstance(value, str) and (word := next(_last_words(value), None)) and word not in post:
                last[word] += 1
        needed = max(thresholds.min_count, thresholds.vocab_min_share * len(values))
        return cls(frozenset(w for w, n in last.items() if n >= needed))

    def trailing(self, text: str, post: frozenset[str]) -> list[str]:
        """The run of vocabulary items, not in the post, that ends ``text``."""
        run: list[str] = []
        for word in _last_words(text):
            if word not in self.items or word in post:
                break
            run.append(word)
        return run[::-1]


@dataclass
class _NumberBins:
    """Identity for few distinct numbers, else train deciles."""

    edges: list[float] | None

    @classmethod
    def fit(cls, numbers: Sequence[float], max_distinct: int = 20) -> _NumberBins:
        ordered = sorted(numbers)
        if len(set(ordered)) <= max_distinct:
            return cls(None)
        return cls(sorted({ordered[len(ordered) * q // 10] for q in range(1, 10)}))

    def __call__(self, number: float) -> str:
        if self.edges is None:
            return str(number)
        return f"decile {bisect.bisect_right(self.edges, number)}"


def derive_features(
    values: Sequence[Any], posts: Sequence[frozenset[str]], n_train: int, thresholds: AuditThresholds
) -> tuple[dict[str, list[Hashable]], list[str]]:
    """Feature name -> one value per sample, and the trailing vocabulary.

    ``values[:n_train]`` are the training samples' values: the vocabulary, the number bins and the set of
    features are fitted on them, without labels. ``posts`` holds each sample's post words (see
    :func:`post_words`). Text gets its length in words, its last word when it is a trailing vocabulary
    item, the run of trailing items and its size; lists get their size; numbers and booleans their value.
    """
    train_values = values[:n_train]
    kinds = {_kind_of(v) for v in train_values} - {"missing"}
    vocab = _TrailingVocabulary.fit(train_values, posts[:n_train], thresholds)
    bins = _NumberBins.fit([v for v in train_values if _kind_of(v) == "number"])

    def text_features(value: Any, post: frozenset[str]) -> dict[str, Hashable]:
        if not isinstance(value, str):
            return dict.fromkeys(("length", "last_word", "trailing_items", "trailing_count"), NOT_APPLICABLE)
        run = vocab.trailing(value, post)
        return {
            "length": _bucket(len(value.split())),
            "last_word": run[-1] if run else OTHER,
            "trailing_items": " ".join(run),
            "trailing_count": len(run),
        }

    def one(value: Any, post: frozenset[str]) -> dict[str, Hashable]:
        kind = _kind_of(value)
        feats: dict[str, Hashable] = {"presence": _presence(value)}
        if "text" in kinds:
            feats.update(text_features(value, post))
        if "list" in kinds:
            feats["count"] = _bucket(len(value)) if kind == "list" else NOT_APPLICABLE
        if "number" in kinds or "bool" in kinds:
            feats["value"] = (
                bins(value) if kind == "number" else str(value) if kind == "bool" else NOT_APPLICABLE
            )
        if "other" in kinds:
            feats["type"] = type(value).__name__
        return feats

    rows = [one(v, p) for v, p in zip(values, posts, strict=True)]
    names = list(rows[0]) if rows else ["presence"]
    return {name: [row[name] for row in rows] for name in names}, sorted(vocab.items)


# ------------------------------------------------------------------------------------------------- rules


def _majority(counts: Counter[str], order: dict[str, int]) -> str:
    """The most frequent label; ties go to the label listed first in the vocabulary (``None`` first)."""
    return max(counts, key=lambda label: (counts[label], -order.get(label, len(order))))


def _is_relation(label: str) -> str:
    return NEGATIVE_LABEL if label == NEGATIVE_LABEL else _RELATION


@dataclass
class _MajorityRule:
    """The majority label per feature value; values rarer than ``min_count`` share one ``<rare>`` value."""

    by_value: dict[Hashable, str]
    fallback: str
    kept: set[Hashable]

    @classmethod
    def fit(
        cls, values: Sequence[Hashable], labels: Sequence[str], min_count: int, order: dict[str, int]
    ) -> _MajorityRule:
        frequency = Counter(values)
        kept = {v for v, n in frequency.items() if n >= min_count}
        per_value: dict[Hashable, Counter[str]] = {}
        for value, label in zip(values, labels, strict=True):
            per_value.setdefault(value if value in kept else RARE, Counter())[label] += 1
        rule = {value: _majority(counts, order) for value, counts in per_value.items()}
        return cls(rule, _majority(Counter(labels), order), kept)

    def predict(self, value: Hashable) -> str:
        return self.by_value.get(value if value in self.kept else RARE, self.fallback)


@dataclass
class ValueStat:
    """One feature value on train: how many samples, their majority relation, the share that is not None."""

    value: str
    count: int
    relation: str
    non_none: float


@dataclass
class FeatureResult:
    """A feature's rule scored on the evaluation samples (percentages, as the project's scorer gives them)."""

    feature: str
    values: int
    accuracy: float
    precision: float
    recall: float
    f1: float
    separation: float
    top_values: list[ValueStat] = field(default_factory=list)


@dataclass
class Flag:
    """A feature whose rule crosses a threshold: which input, which feature, which metric, by how much."""

    input: str
    feature: str
    metric: str
    value: float
    threshold: float

    def __str__(self) -> str:
        what = "None/non-None separation accuracy" if self.metric == "separation" else "micro-F1"
        return (
            f"input {self.input!r}, feature {self.feature!r}: {what} {self.value:.2f} > {self.threshold:g} "
            "from this feature alone (label leakage)"
        )


@dataclass
class InputResult:
    """The audit of one auxiliary input."""

    name: str
    kind: str
    template: str
    files: dict[str, list[str]]
    coverage: dict[str, float]
    vocabulary: list[str]
    features: list[FeatureResult]


@dataclass
class AuditReport:
    """What ``pgmre data audit`` measured; ``flagged`` lists each feature that crosses a threshold."""

    train: str
    eval: str | None
    protocol: str
    n_train: int
    n_eval: int
    thresholds: AuditThresholds
    baseline: FeatureResult
    inputs: list[InputResult]
    flagged: list[Flag]

    @property
    def flagged_inputs(self) -> list[str]:
        return sorted({f.input for f in self.flagged})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _relation_order(vocab: RelationVocab | None, labels: Sequence[str]) -> RelationVocab:
    return vocab if vocab is not None else RelationVocab.from_labels(labels)


def _folds(n: int, k: int) -> list[tuple[list[int], list[int]]]:
    """Contiguous folds, so the pairs of one post (consecutive lines in MNRE) mostly stay together."""
    k = max(2, min(k, n))
    bounds = [round(i * n / k) for i in range(k + 1)]
    every = range(n)
    return [
        ([i for i in every if not bounds[f] <= i < bounds[f + 1]], list(range(bounds[f], bounds[f + 1])))
        for f in range(k)
    ]


def _top_values(
    values: Sequence[Hashable], labels: Sequence[str], vocab: RelationVocab, limit: int = 6
) -> list[ValueStat]:
    per_value: dict[Hashable, Counter[str]] = {}
    for value, label in zip(values, labels, strict=True):
        per_value.setdefault(value, Counter())[label] += 1
    ranked = sorted(per_value.items(), key=lambda kv: -sum(kv[1].values()))[:limit]
    return [
        ValueStat(
            str(value),
            sum(counts.values()),
            _majority(counts, vocab.rel2id),
            round(100.0 * (1 - counts[NEGATIVE_LABEL] / sum(counts.values())), 2),
        )
        for value, counts in ranked
    ]


def _result(
    feature: str,
    train_values: Sequence[Hashable],
    train_labels: Sequence[str],
    eval_values: Sequence[Hashable],
    eval_labels: Sequence[str],
    thresholds: AuditThresholds,
    vocab: RelationVocab,
    splits: list[tuple[list[int], list[int]]] | None,
) -> FeatureResult:
    """The majority-relation rule scored by the project's scorer, and the majority None/non-None rule.

    ``splits`` (cross-validation folds of train) replace ``eval_*`` when there is no evaluation split.
    """
    gold: list[str] = []
    predicted: list[str] = []
    predicted_binary: list[str] = []
    for fit_idx, held_idx in splits or [(list(range(len(train_values))), [])]:
        fit_values = [train_values[i] for i in fit_idx]
        fit_labels = [train_labels[i] for i in fit_idx]
        rule = _MajorityRule.fit(fit_values, fit_labels, thresholds.min_count, vocab.rel2id)
        binary = _MajorityRule.fit(
            fit_values, [_is_relation(x) for x in fit_labels], thresholds.min_count, _BINARY_VOCAB.rel2id
        )
        if held_idx:
            targets = [(train_values[i], train_labels[i]) for i in held_idx]
        else:
            targets = list(zip(eval_values, eval_labels, strict=True))
        for value, label in targets:
            gold.append(label)
            predicted.append(rule.predict(value))
            predicted_binary.append(binary.predict(value))
    scores = score(gold, predicted, vocab)
    separation = score([_is_relation(g) for g in gold], predicted_binary, _BINARY_VOCAB)["accuracy"]
    return FeatureResult(
        feature,
        len({v for v, n in Counter(train_values).items() if n >= thresholds.min_count}),
        scores["accuracy"],
        scores["precision"],
        scores["recall"],
        scores["f1"],
        separation,
        _top_values(train_values, train_labels, vocab),
    )


def _flags(
    name: str, result: FeatureResult, baseline: FeatureResult, thresholds: AuditThresholds
) -> list[Flag]:
    flags = []
    if result.separation > thresholds.max_separation and result.separation > baseline.separation:
        flags.append(Flag(name, result.feature, "separation", result.separation, thresholds.max_separation))
    if result.f1 > thresholds.max_f1 and result.f1 > baseline.f1:
        flags.append(Flag(name, result.feature, "micro_f1", result.f1, thresholds.max_f1))
    return flags


def _labels(samples: Sequence[Sample], what: str) -> list[str]:
    labels = []
    for sample in samples:
        if sample.relation is None:
            raise AuxInputError(
                f"{sample.where}: {what} sample has no relation; the audit needs labelled data"
            )
        labels.append(sample.relation)
    return labels


def audit_aux_inputs(
    train_samples: Sequence[Sample],
    eval_samples: Sequence[Sample] | None,
    inputs: Sequence[AuxInput],
    thresholds: AuditThresholds = AuditThresholds(),
    vocab: RelationVocab | None = None,
    eval_split: str = "dev",
    train_split: str = "train",
) -> AuditReport:
    """Audit each input: train rules on ``train_samples``, score them on ``eval_samples``.

    Without evaluation samples the rules are scored by ``thresholds.folds``-fold cross-validation on the
    training samples (what ``pgmre train`` uses). ``{split}`` in an input's template is filled with
    ``train_split`` for the training side and ``eval_split`` for the evaluation side; a file without it
    serves both sides, which a file keyed by line number cannot do.
    """
    if not train_samples:
        raise AuxInputError("no training samples to fit the rules on")
    train_labels = _labels(train_samples, "training")
    eval_labels = _labels(eval_samples, "evaluation") if eval_samples is not None else []
    vocab = _relation_order(vocab, [*train_labels, *eval_labels])
    splits = None if eval_samples is not None else _folds(len(train_samples), thresholds.folds)
    baseline_feature = ["all"] * len(train_samples)
    baseline = _result(
        "majority baseline",
        baseline_feature,
        train_labels,
        ["all"] * len(eval_labels),
        eval_labels,
        thresholds,
        vocab,
        splits,
    )
    baseline.top_values = []

    posts = post_words([*train_samples, *(eval_samples or [])])
    results: list[InputResult] = []
    flags: list[Flag] = []
    for aux in inputs:
        train_side = aux.read(train_samples, train_split)
        if train_side.coverage == 0:
            raise AuxInputError(
                f"{aux.name}: {', '.join(train_side.files)} lists none of the {len(train_samples)} training "
                "samples (keys are 0-based line numbers or img_ids); is it the right file for this split?"
            )
        files = {"train": train_side.files}
        coverage = {"train": round(100 * train_side.coverage, 2)}
        eval_values: list[Any] = []
        if eval_samples is not None:
            if train_side.keyed_by_line and not aux.per_split:
                raise AuxInputError(
                    f"{aux.name}: {', '.join(aux.templates)} is keyed by line number, so one file cannot serve both the "
                    f"training and the evaluation samples; give a {PLACEHOLDER} template (e.g. "
                    f"phrase_text_{PLACEHOLDER}.json)"
                )
            eval_side = aux.read(eval_samples, eval_split)
            files["eval"] = eval_side.files
            coverage["eval"] = round(100 * eval_side.coverage, 2)
            eval_values = eval_side.values
        n = len(train_samples)
        features, vocabulary = derive_features([*train_side.values, *eval_values], posts, n, thresholds)
        feature_results = []
        for feature, column in features.items():
            result = _result(
                feature, column[:n], train_labels, column[n:], eval_labels, thresholds, vocab, splits
            )
            feature_results.append(result)
            flags.extend(_flags(aux.name, result, baseline, thresholds))
        results.append(
            InputResult(
                aux.name, aux.kind, ", ".join(aux.templates), files, coverage, vocabulary, feature_results
            )
        )
    return AuditReport(
        train=str(train_samples[0].source[0]) if train_samples[0].source else "(samples)",
        eval=(str(eval_samples[0].source[0]) if eval_samples and eval_samples[0].source else None),
        protocol="train -> eval"
        if eval_samples is not None
        else f"{len(splits or [])}-fold cross-validation on train",
        n_train=len(train_samples),
        n_eval=len(eval_samples) if eval_samples is not None else len(train_samples),
        thresholds=thresholds,
        baseline=baseline,
        inputs=results,
        flagged=flags,
    )


# ------------------------------------------------------------------------------------------------ output


def _fmt(value: float) -> str:
    return f"{value:.2f}"


def report_rows(report: AuditReport) -> list[dict[str, str]]:
    """One row per feature (baseline first), as the terminal table and audit.md show them."""
    flagged = {(f.input, f.feature) for f in report.flagged}
    rows = []
    for name, result in [("-", report.baseline)] + [(i.name, f) for i in report.inputs for f in i.features]:
        rows.append(
            {
                "input": name,
                "feature": result.feature,
                "values": str(result.values),
                "accuracy": _fmt(result.accuracy),
                "precision": _fmt(result.precision),
                "recall": _fmt(result.recall),
                "micro-F1": _fmt(result.f1),
                "None sep.": _fmt(result.separation),
                "flag": "LEAK" if (name, result.feature) in flagged else "",
            }
        )
    return rows


def to_markdown(report: AuditReport) -> str:
    """audit.md: the table, the files read, the values behind each flag."""
    t = report.thresholds
    lines = [
        "# Label-leakage audit of auxiliary inputs",
        "",
        f"- train: `{report.train}` ({report.n_train} samples); scored on: "
        + (f"`{report.eval}` ({report.n_eval} samples)" if report.eval else f"{report.protocol}"),
        f"- rule: majority relation per feature value, fitted on train (values seen fewer than {t.min_count} "
        "times in train, and unseen ones, share one `<rare>` value, else get the overall majority); "
        "`None sep.` is the accuracy of the majority None/non-None rule per value.",
        f"- flagged when `None sep.` > {t.max_separation:g} or micro-F1 > {t.max_f1:g} (and above the "
        "majority baseline).",
        "",
    ]
    rows = report_rows(report)
    header = list(rows[0])
    lines += [
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---:" if h not in ("input", "feature", "flag") else "---" for h in header) + "|",
    ]
    lines += ["| " + " | ".join(row[h] for h in header) + " |" for row in rows]
    lines += ["", "## Inputs", ""]
    for aux in report.inputs:
        lines.append(f"### {aux.name} ({aux.kind}: `{aux.template}`)")
        lines.append("")
        for side, paths in aux.files.items():
            lines.append(
                f"- {side}: {', '.join(f'`{p}`' for p in paths)} (covers {aux.coverage[side]:.2f}% of samples)"
            )
        if aux.vocabulary:
            lines.append(f"- trailing vocabulary items: {', '.join(f'`{w}`' for w in aux.vocabulary)}")
        for feature in aux.features:
            if any(f.input == aux.name and f.feature == feature.feature for f in report.flagged):
                values = "; ".join(
                    f"`{v.value or '(none)'}`: {v.count} train samples, {v.non_none:.1f}% non-None, mostly `{v.relation}`"
                    for v in feature.top_values
                )
                lines.append(f"- **{feature.feature}** (flagged), most frequent train values: {values}")
        lines.append("")
    lines += ["## Flags", ""]
    lines += [f"- {flag}" for flag in report.flagged] or ["- none: no input crosses a threshold"]
    return "\n".join(lines) + "\n"


def write_report(report: AuditReport, out_dir: str | Path) -> tuple[Path, Path]:
    """``audit.json`` and ``audit.md`` in ``out_dir``, each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / "audit.json", out / "audit.md"
    write_text_atomic(json_path, json.dumps(report.to_dict(), indent=1) + "\n")
    write_text_atomic(md_path, to_markdown(report))
    return json_path, md_path
