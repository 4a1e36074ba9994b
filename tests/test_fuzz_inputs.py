"""Hypothesis fuzzing of everything that reads user files: the MNRE / JSONL readers, ``pgmre predict``'s
input path and the run loader with damaged files.

Properties: no exception escapes but the project's own (``DataError`` for a file that cannot be read at
all, ``InputError`` for a post, ``RunLoadError`` / ``CacheError`` for a run); a bad line is reported with
its line number; and no good line is ever lost, whatever bad lines surround it. Bounded (a fixed seed and a
few dozen examples per test) so that the suite stays fast and deterministic; raise
``PGMRE_FUZZ_EXAMPLES`` to search longer.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pgmre.data.mnre import ERROR_KINDS, DataError, read_samples
from pgmre.data.synthetic import SyntheticDataset
from pgmre.explain import CacheError
from pgmre.labels import RelationVocab
from pgmre.runfiles import RunLoadError
from pgmre.serve.files import predict_file
from pgmre.serve.inputs import InputError
from pgmre.serve.predictor import Predictor

EXAMPLES = int(os.environ.get("PGMRE_FUZZ_EXAMPLES", "30"))


def fuzz(examples: int = 30) -> Any:
    """Hypothesis settings for ``examples`` cases by default, scaled by ``PGMRE_FUZZ_EXAMPLES`` / 30."""
    return settings(
        max_examples=max(1, examples * EXAMPLES // 30),
        deadline=None,
        derandomize=True,  # the same examples on every run: make test stays reproducible
        database=None,  # no .hypothesis/ directory in the working tree
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


RELATIONS = list(RelationVocab.mnre())
WORD = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=6)

# ---------------------------------------------------------------- strategies: good and bad lines


@st.composite
def good_records(draw: st.DrawFn, index: int) -> dict[str, Any]:
    """A valid record whose first token is unique to ``index`` (so no two records collide)."""
    tokens = [f"u{index}x", *draw(st.lists(WORD, min_size=2, max_size=8))]
    n = len(tokens)
    spans = st.tuples(st.integers(0, n - 1), st.integers(1, n)).filter(lambda p: p[0] < p[1])
    head = draw(spans)
    tail = draw(spans.filter(lambda p: p != head))
    return {
        "token": tokens,
        "h": {"name": " ".join(tokens[head[0] : head[1]]), "pos": list(head)},
        "t": {"name": " ".join(tokens[tail[0] : tail[1]]), "pos": list(tail)},
        "img_id": f"{index}.jpg",
        "relation": draw(st.sampled_from(RELATIONS)),
    }


HUGE_INT = st.integers(4301, 6000).map(lambda n: "9" * n)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, record: dict[str, Any]) -> dict[str, Any]:
    """A record with one field broken: removed, retyped, a hostile string, a span out of range or on
    the other entity."""
    record = json.loads(json.dumps(record))
    key = draw(st.sampled_from(["token", "h", "t", "img_id", "relation", "h.pos", "t.name", "t.pos"]))
    outer, _, inner = key.partition(".")
    target = record[outer] if inner else record
    field = inner or outer
    change = draw(st.sampled_from(["drop", "value", "surrogate", "span", "same"]))
    if change == "drop":
        target.pop(field, None)
    elif change == "value":
        target[field] = draw(JSON_VALUES)
    elif change == "surrogate":
        target[field] = "x\ud800y" if field != "token" else ["a", "\udfff"]
    elif change == "span":
        target[field] = [draw(st.integers(-3, 2**70)), draw(st.integers(-3, 2**70))]
    else:
        record["t"] = dict(record["h"])
    return record


def dump(record: Any, fmt: str) -> bytes:
    text = json.dumps(record) if fmt == "jsonl" else repr(record)
    return text.encode("utf-8", "surrogatepass")


def bad_lines(fmt: str, index: int) -> st.SearchStrategy[bytes]:
    one_line = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b" "))
    return st.one_of(
        one_line,  # random bytes, often not UTF-8
        st.text(max_size=40).map(lambda t: t.replace("\n", " ").encode("utf-8", "surrogatepass")),
        JSON_VALUES.map(lambda v: json.dumps(v).encode()),
        st.integers(1, 120_000).map(lambda n: b"[" * n),  # nesting up to far beyond any parser's limit
        HUGE_INT.map(
            lambda digits: b'{"token": ["a", "b"], "h": {"name": "a", "pos": [0, ' + digits.encode() + b"]}}"
        ),
        good_records(index).flatmap(mutated).map(lambda r: dump(r, fmt)),
    )


@st.composite
def mixed_files(draw: st.DrawFn, fmt: str) -> tuple[list[bytes], set[int]]:
    """Lines of a file (good and bad interleaved, some blank) and the line numbers of the good ones."""
    lines: list[bytes] = []
    good: set[int] = set()
    for index in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["good", "bad", "bad", "blank"]))
        if kind == "good":
            lines.append(dump(draw(good_records(index)), fmt))
            good.add(len(lines))
        elif kind == "bad":
            lines.append(draw(bad_lines(fmt, index)))
        else:
            lines.append(b"   ")
    return lines, good


def is_blank(line: bytes, number: int) -> bool:
    """Blank as the readers see it: Unicode whitespace only, once decoded (a BOM starts line 1)."""
    try:
        return not line.decode("utf-8-sig" if number == 1 else "utf-8").strip()
    except UnicodeDecodeError:
        return False


def write(lines: list[bytes], suffix: str) -> Path:
    with tempfile.NamedTemporaryFile("wb", suffix=suffix, delete=False) as handle:
        handle.write(b"\n".join(lines) + b"\n")
    return Path(handle.name)


# ---------------------------------------------------------------- the MNRE and JSONL readers


@pytest.mark.parametrize(("fmt", "suffix"), [("mnre", ".txt"), ("jsonl", ".jsonl"), ("jsonl", ".txt")])
def test_readers_keep_every_good_record(fmt: str, suffix: str) -> None:
    @fuzz()
    @given(mixed_files(fmt))
    def check(file: tuple[list[bytes], set[int]]) -> None:
        lines, good = file
        path = write(lines, suffix)
        try:
            result = read_samples(path, strict=False)
            read = {s.source[1] for s in result.samples if s.source}
            assert good <= read, (good - read, [str(e) for e in result.errors])
            nonblank = {i for i, line in enumerate(lines, start=1) if not is_blank(line, i)}
            assert read | {e.line for e in result.errors} == nonblank
            assert all(e.kind in ERROR_KINDS and e.message for e in result.errors)
            try:
                read_samples(path, strict=True)
            except DataError as err:
                assert err.issue is not None and err.issue.line not in good
        finally:
            path.unlink()

    check()


# ---------------------------------------------------------------- pgmre predict's input path


def _posts(ds: SyntheticDataset) -> list[dict[str, Any]]:
    from pgmre.data.mnre import load_samples

    return [
        {"text": list(s.tokens), "head": [s.head.start, s.head.end], "tail": [s.tail.start, s.tail.end]}
        for s in load_samples(ds.test)
    ]


@pytest.fixture(scope="module")
def caption_predictor(trained_caption_run: Path) -> Predictor:
    return Predictor.from_pretrained(trained_caption_run)


POST_VALUES = st.one_of(
    JSON_VALUES,
    st.text(max_size=30),
    st.just("x\ud800"),
    st.lists(st.integers(-2, 2**80), min_size=2, max_size=2),
    st.fixed_dictionaries({"name": st.text(max_size=5) | st.none(), "pos": JSON_VALUES}),
    st.fixed_dictionaries({"chars": st.lists(st.integers(-2, 2**80), max_size=3)}),
)


@fuzz(60)
@given(
    st.dictionaries(
        st.sampled_from(["text", "head", "tail", "caption", "explanations", "image", "other"]), POST_VALUES
    )
)
def test_prepare_raises_only_input_errors(caption_predictor: Predictor, post: dict[str, Any]) -> None:
    try:
        prepared = caption_predictor.prepare(post)
    except InputError as err:
        assert str(err)
    else:
        assert prepared.sample.head != prepared.sample.tail


def test_predict_file_loses_no_good_line(
    caption_predictor: Predictor,
    synthetic_dataset: SyntheticDataset,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    posts = _posts(synthetic_dataset)
    bad = st.one_of(
        bad_lines("jsonl", 0),
        st.sampled_from(posts)
        .flatmap(
            lambda p: st.fixed_dictionaries({k: st.just(v) for k, v in p.items()} | {"head": POST_VALUES})
        )
        .map(lambda p: json.dumps(p).encode()),
    )
    root = tmp_path_factory.mktemp("fuzz_predict")

    @fuzz(12)
    @given(st.lists(st.tuples(st.booleans(), st.sampled_from(posts), bad), min_size=1, max_size=10))
    def check(rows: list[tuple[bool, dict[str, Any], bytes]]) -> None:
        lines = [json.dumps(post).encode() if is_good else line for is_good, post, line in rows]
        good = {i for i, (is_good, _, _) in enumerate(rows, start=1) if is_good}
        src = root / "posts.jsonl"
        src.write_bytes(b"\n".join(lines) + b"\n")
        out = root / "pred.jsonl"
        reported: list[str] = []
        try:
            summary = predict_file(
                caption_predictor, src, out, batch_size=4, progress=False, on_error=reported.append
            )
        except DataError as err:  # only a file with no line at all
            assert not good and "no input lines" in str(err)
            return
        predicted = [json.loads(x)["line"] for x in out.read_text().splitlines()]
        assert good <= set(predicted), (good, predicted, reported)
        assert summary.predicted + summary.skipped == sum(
            not is_blank(x, i) for i, x in enumerate(lines, start=1)
        )
        assert all(message.startswith(f"{src}:") for message in reported)

    check()


# ---------------------------------------------------------------- the run loader with damaged files


def run_files(run: Path) -> list[str]:
    """What loading a run reads: its config, relations, tokenizer files and the best checkpoint."""
    loaded = [
        run / "config.yaml",
        run / "rel2id.json",
        *(run / "tokenizer").iterdir(),
        *(run / "best").iterdir(),
    ]
    return sorted(str(p.relative_to(run)) for p in loaded if p.is_file())


@st.composite
def damages(draw: st.DrawFn, files: list[str]) -> tuple[str, str, float, bytes]:
    return (
        draw(st.sampled_from(files)),
        draw(st.sampled_from(["truncate", "overwrite", "empty", "delete", "append"])),
        draw(st.floats(0, 1)),
        draw(st.binary(min_size=1, max_size=64)),
    )


def test_damaged_runs_raise_only_run_load_errors(
    trained_caption_run: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    run = shutil.copytree(trained_caption_run, tmp_path_factory.mktemp("fuzz_run") / "run")

    @fuzz(20)
    @given(damages(run_files(run)))
    def check(damage: tuple[str, str, float, bytes]) -> None:
        name, how, where, junk = damage
        path = run / name
        pristine = (trained_caption_run / name).read_bytes()
        cut = int(where * len(pristine))
        spoiled = {
            "truncate": pristine[:cut],
            "overwrite": pristine[:cut] + junk + pristine[cut + len(junk) :],
            "empty": b"",
            "append": pristine + junk,
            "delete": None,
        }[how]
        if spoiled is None:
            path.unlink()
        else:
            path.write_bytes(spoiled)
        try:
            Predictor.from_pretrained(run)
            event("loaded")  # damage the loader cannot see (e.g. inside the weights); pytest -s shows the mix
        except (RunLoadError, CacheError) as err:
            event(
                f"{type(err).__name__} {err.path.relative_to(run) if isinstance(err, RunLoadError) else ''}"
            )
            assert str(err).startswith(str(run)) or isinstance(err, CacheError), err
        finally:
            path.write_bytes(pristine)

    check()
