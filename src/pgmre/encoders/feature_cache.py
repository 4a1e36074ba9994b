"""Frozen-encoder outputs computed once and kept on disk, content-addressed.

Layout: ``<root>/<spec id>/`` holds ``spec.json`` (what produced the features: encoder id and weights
fingerprint, preprocessing, pooling, max length) and ``shard-*.safetensors`` files whose tensors are
named ``<content key>/<field>``. The content key is the SHA-256 of the input (image bytes, caption or
explanation text), so a changed input misses while every other entry still hits, and a changed spec
lands in a different directory without touching the others. Shards are written to a temporary file,
fsynced and renamed, so an interrupted run leaves only complete shards behind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from pgmre.encoders.frozen_text import FrozenTextEncoder
from pgmre.progress import progress_bar

FORMAT_VERSION = 1
DEFAULT_FEATURE_CACHE = ".cache/pgmre/features"
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".onnx", ".gguf")
# Files that change what a model computes (weights aside): configs, vocabularies, preprocessing.
_MODEL_FILES = {
    "config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
    "preprocessor_config.json",
}
_STALE_TMP_SECONDS = 3600
# Each run (or served request) with misses writes a shard; many small ones are merged on open.
_SMALL_SHARD_BYTES = 8 << 20
_COMPACT_AT = 32

log = logging.getLogger(__name__)

Entry = dict[str, torch.Tensor]


def content_key(data: bytes | str) -> str:
    """SHA-256 hex digest of an input (text is hashed as UTF-8)."""
    return hashlib.sha256(data.encode("utf-8") if isinstance(data, str) else data).hexdigest()


def file_content_key(path: str | Path) -> str:
    """:func:`content_key` of a file's bytes, streamed (the file is never held in memory)."""
    with Path(path).open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


def _file_fingerprint(path: Path) -> str:
    # Size plus the first and last MiB: cheap on large weight files, and independent of path and mtime.
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with path.open("rb") as handle:
        digest.update(handle.read(1 << 20))
        if size > 2 << 20:
            handle.seek(-(1 << 20), os.SEEK_END)
            digest.update(handle.read())
    return digest.hexdigest()[:16]


def weights_fingerprint(name_or_path: str | Path) -> str:
    """Identify a model: a weight file, or a directory's weights, configs and vocabularies; a hub id
    with the commit of its downloaded snapshot, so that features cached before an upstream update are
    not reused after it."""
    path = Path(name_or_path)
    if path.is_file():
        return _file_fingerprint(path)
    if not path.is_dir():
        return _hub_snapshot(str(name_or_path))
    parts = []
    for item in sorted(path.rglob("*")):
        if item.is_file() and (item.suffix in _WEIGHT_SUFFIXES or item.name in _MODEL_FILES):
            parts.append(f"{item.relative_to(path)}={_file_fingerprint(item)}")
    return content_key("\n".join(parts))[:16]


def _hub_snapshot(repo_id: str) -> str:
    """``repo_id@commit`` of the snapshot ``transformers`` loads (the hub cache's ``main``); the id alone
    when none is downloaded yet."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(repo_id, "config.json")
    except ValueError:  # not a valid repo id: a path that does not exist, named as given
        return repo_id
    return f"{repo_id}@{Path(found).parent.name}" if isinstance(found, str) else repo_id


def spec_id(spec: Mapping[str, Any]) -> str:
    """Stable id of a feature spec (canonical JSON)."""
    canonical = json.dumps({"format": FORMAT_VERSION, **spec}, sort_keys=True, default=str)
    return content_key(canonical)[:20]


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{uuid.uuid4().hex}-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _entry_bytes(entry: Mapping[str, torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in entry.values())


class MemoryLRU:
    """Feature entries held in memory, at most ``max_bytes`` in all; the least recently used go first.

    For a long-running service, where every uploaded image is new: on disk each request would add a
    shard and an open memory map, without bound. Several caches may share one budget (entries are keyed
    by cache id and content key). Thread-safe.
    """

    def __init__(self, max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be at least 0, got {max_bytes}")
        self.max_bytes = max_bytes
        self.nbytes = 0
        self.evictions = 0
        self._entries: OrderedDict[tuple[str, str], tuple[Entry, int]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, cache_id: str, key: str) -> Entry | None:
        with self._lock:
            found = self._entries.get((cache_id, key))
            if found is None:
                return None
            self._entries.move_to_end((cache_id, key))
            return found[0]

    def put(self, cache_id: str, key: str, entry: Mapping[str, torch.Tensor]) -> None:
        """Store a copy (a row of a batch tensor would keep the whole batch alive); an entry larger than
        the whole budget is not kept."""
        own = {name: value.detach().cpu().clone() for name, value in entry.items()}
        size = _entry_bytes(own)
        with self._lock:
            old = self._entries.pop((cache_id, key), None)
            if old is not None:
                self.nbytes -= old[1]
            if size > self.max_bytes:
                return
            self._entries[(cache_id, key)] = (own, size)
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped
                self.evictions += 1

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "max_mb": round(self.max_bytes / 2**20, 3),
                "mb": round(self.nbytes / 2**20, 3),
                "entries": len(self._entries),
                "evictions": self.evictions,
            }


class FeatureCache:
    """A directory of safetensors shards holding the entries of one feature spec.

    ``hits``/``misses`` count look-ups by ``compute``; several processes may share a cache (each
    writes its own shards; ``refresh`` picks up shards written by others). With ``memory`` set (a
    service), new entries go to that bounded in-memory LRU instead of disk: the shards are only read.
    """

    def __init__(self, root: str | Path, spec: Mapping[str, Any], shard_entries: int = 2048) -> None:
        self.spec = dict(spec)
        self.id = spec_id(self.spec)
        self.dir = Path(root) / self.id
        self.dir.mkdir(parents=True, exist_ok=True)
        spec_file = self.dir / "spec.json"
        if not spec_file.exists():
            _atomic_write_text(spec_file, json.dumps(self.spec, indent=2, sort_keys=True, default=str) + "\n")
        self.shard_entries = shard_entries
        self.memory: MemoryLRU | None = None
        self.hits = 0
        self.misses = 0
        self._index: dict[str, tuple[Path, tuple[str, ...]]] = {}
        self._handles: dict[Path, Any] = {}
        self._remove_stale_tmp()
        if len(self._small_shards()) >= _COMPACT_AT:
            self.compact()
        self.refresh()

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def _remove_stale_tmp(self) -> None:
        now = time.time()
        for tmp in self.dir.glob(".tmp-*"):
            try:
                if now - tmp.stat().st_mtime > _STALE_TMP_SECONDS:
                    tmp.unlink()
            except OSError:
                pass

    def _small_shards(self) -> list[Path]:
        return [
            p for p in sorted(self.dir.glob("shard-*.safetensors")) if p.stat().st_size < _SMALL_SHARD_BYTES
        ]

    def compact(self) -> int:
        """Merge the small shards into one (atomically written first, originals removed after).

        Safe next to other processes: a reader keeps its open shards (mmap) and a new one sees the merged
        file; entries present in both during the switch are identical. Returns the shards merged.
        """
        small = self._small_shards()
        if len(small) < 2:
            return 0
        tensors: dict[str, torch.Tensor] = {}
        merged: list[Path] = []
        for shard in small:
            try:
                with safe_open(str(shard), framework="pt") as handle:
                    for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                        tensors[name] = handle.get_tensor(name)
            except Exception as err:  # damaged or vanished (another process compacted it): leave it
                log.warning("feature cache: not compacting %s (%s)", shard, err)
                continue
            merged.append(shard)
        self._write_shard(tensors)
        for shard in merged:
            shard.unlink(missing_ok=True)
        return len(merged)

    def _write_shard(self, tensors: dict[str, torch.Tensor]) -> None:
        final = self.dir / f"shard-{time.time_ns()}-{uuid.uuid4().hex[:8]}.safetensors"
        tmp = self.dir / f".tmp-{final.name}"
        save_file(tensors, str(tmp), metadata={"spec": self.id, "format": str(FORMAT_VERSION)})
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, final)

    def refresh(self) -> None:
        """Index shards not seen yet (written by an earlier run or another process)."""
        for shard in sorted(self.dir.glob("shard-*.safetensors")):
            if shard in self._handles:
                continue
            try:
                handle = safe_open(str(shard), framework="pt")
            except Exception as err:  # a foreign or damaged file must not take the cache down
                log.warning("feature cache: ignoring unreadable shard %s (%s)", shard, err)
                self._handles[shard] = None
                continue
            self._handles[shard] = handle
            fields: dict[str, list[str]] = {}
            for name in handle.keys():  # noqa: SIM118 (safe_open is not a mapping)
                key, _, field = name.partition("/")
                fields.setdefault(key, []).append(field)
            for key, names in fields.items():
                self._index[key] = (shard, tuple(names))

    def get(self, key: str) -> Entry | None:
        if self.memory is not None:
            entry = self.memory.get(self.id, key)
            if entry is not None:
                return entry
        found = self._index.get(key)
        if found is None:
            return None
        shard, names = found
        handle = self._handles[shard]
        return {name: handle.get_tensor(f"{key}/{name}") for name in names}

    def put_many(self, entries: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        """Write ``entries`` as one new shard, atomically (or into ``memory`` when set)."""
        if not entries:
            return
        if self.memory is not None:
            for key, fields in entries.items():
                self.memory.put(self.id, key, fields)
            return
        tensors = {
            f"{key}/{name}": value.detach().cpu().contiguous()
            for key, fields in entries.items()
            for name, value in fields.items()
        }
        self._write_shard(tensors)
        self.refresh()

    def compute(
        self,
        keys: Sequence[str],
        fn: Callable[[list[str]], list[Entry]],
        batch_size: int = 32,
        progress: bool = False,
        desc: str = "features",
    ) -> dict[str, Entry]:
        """Entries for ``keys``: cached ones are read, the others computed by ``fn`` in batches and stored.

        ``fn`` receives a batch of missing keys and returns one entry per key, in order.
        """
        unique = list(dict.fromkeys(keys))
        result: dict[str, Entry] = {}
        if self.memory is not None:  # taken now: storing the misses may evict them
            for key in unique:
                entry = self.memory.get(self.id, key)
                if entry is not None:
                    result[key] = entry
        missing = [k for k in unique if k not in result and k not in self._index]
        if missing:
            self.refresh()
            missing = [k for k in missing if k not in self._index]
        self.hits += len(unique) - len(missing)
        self.misses += len(missing)
        pending: dict[str, Entry] = {}
        enabled = progress and bool(missing)
        with progress_bar(total=len(missing), desc=desc, enabled=enabled, unit="item") as bar:
            for start in range(0, len(missing), batch_size):
                chunk = missing[start : start + batch_size]
                outputs = fn(chunk)
                if len(outputs) != len(chunk):
                    raise RuntimeError(
                        f"feature function returned {len(outputs)} entries for {len(chunk)} keys"
                    )
                pending.update(zip(chunk, outputs, strict=True))
                bar.update(len(chunk))
                if len(pending) >= self.shard_entries:
                    self.put_many(pending)
                    result.update(pending)
                    pending = {}
        self.put_many(pending)
        result.update(pending)
        for key in unique:
            if key not in result:
                entry = self.get(key)
                if entry is None:
                    raise RuntimeError(f"feature cache {self.dir}: entry {key} vanished")
                result[key] = entry
        return result


def _stack_rows(entries: Iterable[Entry], field: str) -> torch.Tensor:
    return torch.stack([e[field] for e in entries])


def frozen_text_spec(encoder: FrozenTextEncoder, **preprocessing: Any) -> dict[str, Any]:
    """The cache spec of features computed by a frozen text encoder.

    Keyed on the fingerprint of the resolved encoder (not on how it was spelled: ``bundled:minilm``,
    its directory, or a symlink to it give the same spec), its max length, and ``preprocessing``.
    """
    return {
        "encoder": weights_fingerprint(encoder.path),
        "max_length": encoder.max_length,
        **preprocessing,
    }


def compute_longest_first(
    cache: FeatureCache,
    encoder: FrozenTextEncoder,
    texts: Iterable[str],
    compute: Callable[[list[str]], list[Entry]],
    progress: bool = False,
    desc: str = "features",
) -> tuple[dict[str, str], dict[str, Entry]]:
    """Cached features of the distinct ``texts``: ``({content key: text}, {content key: entry})``.

    Misses go through ``compute`` longest first, so that similar lengths share a batch and little
    padding is computed.
    """
    by_key = {content_key(t): t for t in texts}
    order = sorted(by_key, key=lambda k: -len(by_key[k]))
    entries = cache.compute(
        order,
        lambda chunk: compute([by_key[k] for k in chunk]),
        batch_size=encoder.batch_size,
        progress=progress,
        desc=desc,
    )
    return by_key, entries


class FrozenTextFeatures:
    """Token states and pooler output of the pretrained (not fine-tuned) text encoder, cached on disk.

    Used for entity explanations when ``text.explanation_encoder = frozen``: the explanation side then
    costs nothing per training step. Token states are stored in float16 at their true length (about
    25 tokens x 384 x 2 bytes = 19 KB per MiniLM explanation) and returned as float32.
    """

    def __init__(
        self,
        encoder_name: str,
        max_length: int,
        cache_dir: str | Path = DEFAULT_FEATURE_CACHE,
        device: str = "auto",
        batch_size: int = 64,
        progress: bool = False,
    ) -> None:
        self.encoder = FrozenTextEncoder(encoder_name, max_length, device=device, batch_size=batch_size)
        self.max_length = max_length
        self.progress = progress
        self.cache = FeatureCache(
            cache_dir,
            frozen_text_spec(
                self.encoder, kind="text-states", states_dtype="float16", pooled="pooler_output"
            ),
            shard_entries=1024,
        )

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _compute(self, texts: list[str]) -> list[Entry]:
        out = self.encoder.run(texts)
        if out.pooled is None:
            raise ValueError(
                f"{self.encoder.name}: the model has no pooler output, which frozen explanations use as "
                "the sentence-level feature; use a BERT-style encoder with a pooler"
            )
        return [
            {"states": states.to(torch.float16), "pooled": pooled}
            for states, pooled in zip(out.states, out.pooled, strict=True)
        ]

    def _entries(self, texts: Sequence[str]) -> tuple[list[str], dict[str, Entry]]:
        keys = [content_key(t) for t in texts]
        _, entries = compute_longest_first(
            self.cache, self.encoder, texts, self._compute, self.progress, desc="explanations"
        )
        return keys, entries

    def precompute(self, texts: Sequence[str]) -> None:
        """Fill the cache for ``texts`` without assembling the (large) padded tensors."""
        self._entries(texts)

    def encode(
        self, texts: Sequence[str], dtype: torch.dtype = torch.float32
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``states [N, L, d]`` padded to the longest text, ``mask [N, L]`` (long), ``pooled [N, d]``.

        ``dtype`` is that of ``states``: pass ``torch.float16`` (the stored precision) to halve the memory
        of many explanations held at once.
        """
        if not texts:
            return torch.zeros(0, 0, self.dim), torch.zeros(0, 0, dtype=torch.long), torch.zeros(0, self.dim)
        keys, entries = self._entries(texts)
        rows = [entries[k] for k in keys]
        width = max(int(e["states"].shape[0]) for e in rows)
        dim = int(rows[0]["states"].shape[1])
        states = torch.zeros(len(rows), width, dim, dtype=dtype)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, entry in enumerate(rows):
            length = int(entry["states"].shape[0])
            states[i, :length] = entry["states"].to(dtype)
            mask[i, :length] = 1
        return states, mask, _stack_rows(rows, "pooled").float()
