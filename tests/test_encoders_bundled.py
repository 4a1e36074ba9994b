"""Bundled text encoders: the split MPNet archive is joined, verified and unpacked atomically."""

from __future__ import annotations

import importlib.metadata
import io
import zipfile
from pathlib import Path

import pytest

from pgmre.encoders.bundled import (
    BUNDLED_MPNET,
    MPNET_PARTS,
    EncoderNotFoundError,
    resolve_bundled,
    unpack_split_zip,
)


def _split_zip(tmp_path: Path, files: dict[str, bytes], parts: int = 3) -> list[Path]:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    blob = buffer.getvalue()
    size = -(-len(blob) // parts)
    paths = []
    for i in range(parts):
        path = tmp_path / f"model.zip.{i + 1:03d}"
        path.write_bytes(blob[i * size : (i + 1) * size])
        paths.append(path)
    return paths


FILES = {
    "m/config.json": b'{"hidden_size": 8}',
    "m/model.safetensors": bytes(range(256)) * 400,
    "m/desktop.ini": b"[.ShellClassInfo]",
    "m/1_Pooling/config.json": b"{}",
}


def test_parts_are_joined_and_unpacked_once(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, FILES)
    target = tmp_path / "out" / "model-1"
    killed = tmp_path / "out" / ".model-1.abc123"  # the scratch of an unpack that was SIGKILLed
    (killed / "unpacked").mkdir(parents=True)
    (killed / "joined.zip").write_bytes(b"partial")
    unpack_split_zip(parts, target, skip=("desktop.ini", "1_Pooling/"))
    assert (target / "m" / "model.safetensors").read_bytes() == FILES["m/model.safetensors"]
    assert not (target / "m" / "desktop.ini").exists() and not (target / "m" / "1_Pooling").exists()
    assert [p.name for p in (tmp_path / "out").iterdir() if p.is_dir()] == ["model-1"]  # no scratch left
    stamp = (target / ".pgmre-complete").stat().st_mtime_ns
    unpack_split_zip(parts, target)  # done already: nothing is redone
    assert (target / ".pgmre-complete").stat().st_mtime_ns == stamp


def test_a_damaged_part_is_named_and_leaves_nothing(tmp_path: Path) -> None:
    parts = _split_zip(tmp_path, FILES)
    data = bytearray(parts[1].read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the compressed model: the member's CRC fails
    parts[1].write_bytes(bytes(data))
    target = tmp_path / "out" / "model-1"
    with pytest.raises(EncoderNotFoundError, match=r"model\.zip\.002.*damaged"):
        unpack_split_zip(parts, target)
    assert [p for p in (tmp_path / "out").iterdir() if p.is_dir()] == []


def test_unknown_bundled_name_lists_the_known_ones() -> None:
    with pytest.raises(EncoderNotFoundError, match="bundled:minilm, bundled:mpnet"):
        resolve_bundled("bundled:bert-large")


def _mpnet_installed() -> bool:
    try:
        for name in MPNET_PARTS:
            importlib.metadata.distribution(name)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _mpnet_installed(), reason="the all-mpnet-base-v2 part packages are not installed")
def test_bundled_mpnet_loads_offline_with_entity_markers() -> None:
    from transformers import AutoConfig

    from pgmre.data.types import Entity, Sample
    from pgmre.encoders.text import EntityMarkerTokenizer, resolve_text_encoder

    directory = Path(resolve_text_encoder(BUNDLED_MPNET))
    assert AutoConfig.from_pretrained(directory).hidden_size == 768
    assert resolve_text_encoder(BUNDLED_MPNET) == str(directory)  # second call: already unpacked
    tokenizer = EntityMarkerTokenizer(str(directory), max_length=32)
    words = tuple(["Ada", "Lovelace", "worked", "with", "Charles", "Babbage"])
    sample = Sample(tokens=words, head=Entity("Ada Lovelace", 0, 2), tail=Entity("Charles Babbage", 4, 6))
    tokens = tokenizer.tokenizer.convert_ids_to_tokens(tokenizer.encode(sample)["input_ids"])
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokens.index("<h>") < tokens.index("</h>") < tokens.index("<t>") < tokens.index("</t>")
