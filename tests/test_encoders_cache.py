"""The on-disk frozen-feature cache and the frozen explanation features (tiny random BERT)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from pgmre.encoders.feature_cache import (
    FeatureCache,
    FrozenTextFeatures,
    MemoryLRU,
    content_key,
    weights_fingerprint,
)

from tiny import make_tiny_bert


def entry(value: float, n: int = 3) -> dict[str, torch.Tensor]:
    return {"feats": torch.full((n,), value)}


class Counting:
    """A feature function that records which keys it was asked for."""

    def __init__(self, fail_after: int | None = None) -> None:
        self.seen: list[str] = []
        self.fail_after = fail_after

    def __call__(self, keys: list[str]) -> list[dict[str, torch.Tensor]]:
        if self.fail_after is not None and len(self.seen) >= self.fail_after:
            raise KeyboardInterrupt
        self.seen.extend(keys)
        return [entry(float(len(k))) for k in keys]


def test_second_run_reads_everything_from_disk(tmp_path: Path) -> None:
    keys = ["a", "bb", "ccc", "bb"]
    first = Counting()
    out = FeatureCache(tmp_path, {"kind": "t"}).compute(keys, first, batch_size=2)
    assert first.seen == ["a", "bb", "ccc"] and out["ccc"]["feats"].tolist() == [3.0] * 3
    again = Counting()
    cache = FeatureCache(tmp_path, {"kind": "t"})
    out2 = cache.compute(keys, again)
    assert again.seen == [] and (cache.hits, cache.misses) == (3, 0)
    assert all(torch.equal(out[k]["feats"], out2[k]["feats"]) for k in out)


def test_a_different_spec_is_a_separate_namespace(tmp_path: Path) -> None:
    FeatureCache(tmp_path, {"kind": "t", "size": 224}).compute(["a"], Counting())
    other = Counting()
    FeatureCache(tmp_path, {"kind": "t", "size": 256}).compute(["a"], other)
    assert other.seen == ["a"]
    unchanged = Counting()
    FeatureCache(tmp_path, {"kind": "t", "size": 224}).compute(["a"], unchanged)
    assert unchanged.seen == []
    assert len(list(tmp_path.glob("*/spec.json"))) == 2


def test_interrupted_run_keeps_finished_shards_and_no_partial_files(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, {"kind": "t"}, shard_entries=2)
    with pytest.raises(KeyboardInterrupt):
        cache.compute(["k1", "k2", "k3", "k4", "k5"], Counting(fail_after=2), batch_size=2)
    assert not list(cache.dir.glob(".tmp-*"))
    resumed = Counting()
    FeatureCache(tmp_path, {"kind": "t"}).compute(["k1", "k2", "k3", "k4", "k5"], resumed, batch_size=2)
    assert resumed.seen == ["k3", "k4", "k5"]


def test_damaged_shard_is_ignored_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cache = FeatureCache(tmp_path, {"kind": "t"})
    cache.compute(["a"], Counting())
    (cache.dir / "shard-0-broken.safetensors").write_bytes(b"not safetensors")
    again = FeatureCache(tmp_path, {"kind": "t"})
    assert "a" in again
    assert "ignoring unreadable shard" in caplog.text


def test_many_small_shards_are_merged_on_open(tmp_path: Path) -> None:
    cache = FeatureCache(tmp_path, {"kind": "t"})
    for i in range(40):  # e.g. one shard per served request
        cache.compute([f"k{i}"], Counting())
    assert len(list(cache.dir.glob("shard-*"))) == 40
    reopened = FeatureCache(tmp_path, {"kind": "t"})
    assert len(list(cache.dir.glob("shard-*"))) == 1 and len(reopened) == 40
    merged, old = reopened.get("k7"), cache.get("k7")  # the old instance still reads its mapped shards
    assert merged is not None and torch.equal(merged["feats"], torch.full((3,), 2.0))
    assert old is not None and torch.equal(old["feats"], merged["feats"])


def test_memory_lru_drops_the_least_recently_used_within_its_bytes() -> None:
    memory = MemoryLRU(max_bytes=3 * 12)  # three entries of 3 float32
    for key in "abc":
        memory.put("cache", key, entry(1.0))
    assert memory.get("cache", "a") is not None  # now the most recently used
    memory.put("cache", "d", entry(2.0))
    assert memory.get("cache", "b") is None and memory.get("cache", "a") is not None
    assert (len(memory), memory.nbytes, memory.evictions) == (3, 36, 1)
    memory.put("other", "a", entry(3.0))  # caches sharing the budget do not see each other's keys
    assert memory.get("other", "a")["feats"].tolist() == [3.0] * 3
    memory.put("cache", "huge", entry(0.0, n=100))  # larger than the budget: not kept, nothing evicted
    assert memory.get("cache", "huge") is None and len(memory) == 3
    batch = torch.zeros(64, 3)
    memory.put("cache", "row", {"feats": batch[0]})  # a copy: the row does not pin its 64-row batch
    assert memory.get("cache", "row")["feats"].untyped_storage().nbytes() == 12
    assert memory.stats()["entries"] == 3 and memory.stats()["max_mb"] == round(36 / 2**20, 3)


def test_a_cache_with_memory_reads_disk_and_never_writes_it(tmp_path: Path) -> None:
    FeatureCache(tmp_path, {"kind": "t"}).compute(["on-disk"], Counting())
    shards = sorted(tmp_path.rglob("shard-*"))
    cache = FeatureCache(tmp_path, {"kind": "t"})
    cache.memory = MemoryLRU(max_bytes=2 * 12)
    counting = Counting()
    for round_ in range(2):
        for key in ["on-disk", "x", "yy", "zzz"]:
            out = cache.compute([key], counting)
            assert out[key]["feats"].tolist() == [float(len(key))] * 3, round_
    assert sorted(tmp_path.rglob("shard-*")) == shards  # nothing written
    # room for two: cycling through three new keys evicts each one before it comes round again
    assert counting.seen == ["x", "yy", "zzz", "x", "yy", "zzz"]
    assert cache.memory.nbytes <= 24 and cache.memory.evictions == 4
    assert cache.get("on-disk") is not None and cache.get("zzz") is not None and cache.get("x") is None


def test_wrong_number_of_outputs_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="returned 0 entries for 1 keys"):
        FeatureCache(tmp_path, {"kind": "t"}).compute(["a"], lambda keys: [])


def test_content_key_and_weights_fingerprint(tmp_path: Path) -> None:
    assert content_key("x") == content_key(b"x") != content_key("y")
    (tmp_path / "config.json").write_text("{}")
    (tmp_path / "model.safetensors").write_bytes(b"1" * 100)
    (tmp_path / "README.md").write_text("docs")
    before = weights_fingerprint(tmp_path)
    (tmp_path / "README.md").write_text("other docs")
    assert weights_fingerprint(tmp_path) == before
    (tmp_path / "model.safetensors").write_bytes(b"2" * 100)
    assert weights_fingerprint(tmp_path) != before
    assert weights_fingerprint("org/model") == "org/model"


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("tiny_bert"))


def test_frozen_text_features_shapes_padding_and_cache(tiny_bert: Path, tmp_path: Path) -> None:
    texts = ["Obama is a politician.", "Berlin", "a much longer explanation " * 20, "Berlin"]
    frozen = FrozenTextFeatures(str(tiny_bert), max_length=12, cache_dir=tmp_path, device="cpu")
    states, mask, pooled = frozen.encode(texts)
    assert states.shape == (4, 12, 32) and states.dtype == torch.float32
    assert mask.dtype == torch.long and mask.sum(1).tolist() == [7, 3, 12, 3]
    assert pooled.shape == (4, 32)
    assert torch.equal(states[1], states[3]) and states[1, 3:].eq(0).all()
    assert frozen.encoder.texts_encoded == 3  # duplicates are encoded once

    # the real encoder output, against which fp16 storage is compared
    from transformers import AutoModel, AutoTokenizer

    model = AutoModel.from_pretrained(tiny_bert).eval()
    enc = AutoTokenizer.from_pretrained(tiny_bert)(texts[0], return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    assert torch.allclose(states[0, :7], out.last_hidden_state[0], atol=1e-2)
    assert torch.allclose(pooled[0], out.pooler_output[0], atol=1e-5)

    again = FrozenTextFeatures(str(tiny_bert), max_length=12, cache_dir=tmp_path, device="cpu")
    states2, _, pooled2 = again.encode(texts[:2], dtype=torch.float16)
    assert again.encoder.texts_encoded == 0 and again.cache.hits == 2
    assert states2.dtype == torch.float16 and states2.shape == (2, 7, 32)
    assert torch.equal(states2.float(), states[:2, :7]) and torch.equal(pooled2, pooled[:2])

    longer = FrozenTextFeatures(str(tiny_bert), max_length=20, cache_dir=tmp_path, device="cpu")
    longer.encode(texts[:1])
    assert longer.encoder.texts_encoded == 1  # max_length is part of the key


def test_frozen_text_features_of_nothing(tiny_bert: Path, tmp_path: Path) -> None:
    states, mask, pooled = FrozenTextFeatures(str(tiny_bert), 8, cache_dir=tmp_path).encode([])
    assert states.shape == (0, 0, 32) and mask.shape == (0, 0) and pooled.shape == (0, 32)


def test_frozen_cache_id_does_not_depend_on_how_the_encoder_is_spelled(
    tiny_bert: Path, tmp_path: Path
) -> None:
    from pgmre.encoders.captions import CaptionEncoder
    from pgmre.encoders.text import resolve_text_encoder

    link = tmp_path / "link-to-bert"
    link.symlink_to(tiny_bert, target_is_directory=True)
    spellings = [
        str(tiny_bert),
        str(link),
        str(tiny_bert) + "/",
        str(tmp_path / ".." / tmp_path.name / link.name),
    ]
    ids = {
        FrozenTextFeatures(name, 12, cache_dir=tmp_path / "c", device="cpu").cache.id for name in spellings
    }
    assert len(ids) == 1
    captions = {CaptionEncoder(name, 12, True, tmp_path / "c", device="cpu").cache.id for name in spellings}
    assert len(captions) == 1 and captions != ids  # a different kind of feature, a different entry set

    # what `pgmre features` spells (the config name) and what training uses (the resolved directory)
    bundled = FrozenTextFeatures("bundled:minilm", 64, cache_dir=tmp_path / "c", device="cpu")
    resolved = FrozenTextFeatures(
        resolve_text_encoder("bundled:minilm"), 64, cache_dir=tmp_path / "c", device="cpu"
    )
    assert bundled.cache.id == resolved.cache.id

    # changed weights -> a different cache
    other = make_tiny_bert(tmp_path / "other", seed=1)
    assert FrozenTextFeatures(str(other), 12, cache_dir=tmp_path / "c", device="cpu").cache.id not in ids


def test_a_hub_model_is_identified_by_its_downloaded_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Features cached for one upstream revision of a hub model are not reused for the next one."""
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path))
    repo = tmp_path / "models--org--vision"
    assert weights_fingerprint("org/vision") == "org/vision"  # not downloaded yet
    for commit in ("a1" * 20, "b2" * 20):
        (repo / "snapshots" / commit).mkdir(parents=True)
        (repo / "snapshots" / commit / "config.json").write_text("{}")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("a1" * 20)
    first = weights_fingerprint("org/vision")
    (repo / "refs" / "main").write_text("b2" * 20)  # the model was updated upstream and downloaded again
    assert (first, weights_fingerprint("org/vision")) == (
        "org/vision@" + "a1" * 20,
        "org/vision@" + "b2" * 20,
    )
