"""MNRE from its upstream repositories into pgmre's layout: ``pgmre data fetch mnre``.

Upstream (see the manifest, ``pgmre/resources/mnre_manifest.json``):

- ``thecharm/MNRE`` ``mnre_txt/mnre_{split}.txt``: the samples, one Python-literal dict per line (the val
  file is named ``mnre_val .txt``, with a space);
- ``zefanZhang-cn/CAMIM`` ``CAMIM/data/caption/``: ``{cogvlm,minicpm,llavanext}_{split}.json`` keyed by
  image file stem, and ``BLIP_{split}.txt``, one ``{'img_id': ..., 'text': ...}`` literal per line;
- ``CAMIM/data/txt/``: TMR/CAMIM's grounding phrases and HVPNeT's crop dicts, which carry the gold label.

The fetched tree (``DEST``, by default ``data/mnre``)::

    mnre_{split}.txt                 the upstream text, byte for byte (validated against rel2id.json)
    captions/{source}_{split}.json   {img_id: caption} for the images of the split, in upstream order
    rel2id.json                      pgmre's own MNRE label map
    aux/                             with --aux only: the label-carrying files, README.md, label_carrying.json
    upstream/OWNER/REPO/PATH         the verified upstream files (a mirror in itself)
    fetch.json                       provenance: every upstream file and every output, with sha256
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pgmre.data.fetch import (
    FetchError,
    Manifest,
    ManifestFile,
    RetryPolicy,
    fetch_file,
    load_manifest,
    open_origin,
    sha256_of,
)
from pgmre.data.mnre import DataError, read_samples
from pgmre.data.parsing import ParseError, parse_literal
from pgmre.labels import RelationVocab
from pgmre.outputs import atomic_write, write_text_atomic

DEFAULT_DEST = Path("data/mnre")
RAW_DIR = "upstream"
AUX_DIR = "aux"


class ConversionError(ValueError):
    """An upstream file that verified but cannot be converted (names the file and line)."""


@dataclass
class FetchReport:
    """What a fetch did: per file, downloaded or already verified; failures; splits the origin lacks."""

    dest: Path
    downloaded: list[ManifestFile] = field(default_factory=list)
    verified: list[ManifestFile] = field(default_factory=list)
    failures: list[FetchError] = field(default_factory=list)
    #: splits not requested whose text file the origin does not have
    unavailable_splits: list[str] = field(default_factory=list)
    outputs: dict[str, str] = field(default_factory=dict)  # path relative to dest -> sha256
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures

    def missing_splits(self) -> list[str]:
        """Requested splits whose text the origin does not have (404, not in the mirror)."""
        return list(dict.fromkeys(e.file.split for e in self.failures if e.absent and e.file.kind == "text"))


def _literal_lines(path: Path) -> list[tuple[int, Any]]:
    """``(line number, value)`` of every non-blank Python-literal line; errors name file and line."""
    records = []
    with path.open(encoding="utf-8") as handle:
        for lineno, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                records.append((lineno, parse_literal(line.strip())))
            except ParseError as err:
                raise ConversionError(f"{path}:{lineno}: not a Python literal ({err})") from None
    return records


def upstream_captions(path: Path, fmt: str, img_ids: Sequence[str]) -> tuple[dict[str, str], list[str]]:
    """``{img_id: caption}`` for the images ``img_ids`` of one split, in upstream order, and the keys dropped.

    ``stem_json`` files key by image file stem (CogVLM, MiniCPM-V, LLaVA-NeXT), ``img_id_lines`` files by
    img_id (BLIP). Captions are stripped (LLaVA-NeXT's start with a newline). Upstream entries for no
    image of the split (CAMIM's ``inf`` placeholder) are dropped and returned.
    """
    from pgmre.encoders.captions import CaptionFileError, read_caption_file
    from pgmre.encoders.paths import file_stem

    wanted = set(img_ids)
    if fmt == "stem_json":
        by_stem = {file_stem(img_id): img_id for img_id in wanted}
        if len(by_stem) != len(wanted):
            raise ConversionError(
                f"{path}: two images of the split share a file stem; stem keys are ambiguous"
            )
        try:
            pairs = [(by_stem.get(stem, stem), text) for stem, text in read_caption_file(path).items()]
        except CaptionFileError as err:
            raise ConversionError(str(err)) from None
    elif fmt == "img_id_lines":
        pairs = []
        for lineno, record in _literal_lines(path):
            if not (isinstance(record, dict) and isinstance(record.get("img_id"), str)):
                raise ConversionError(f"{path}:{lineno}: expected {{'img_id': str, 'text': str}}")
            if not isinstance(record.get("text"), str):
                raise ConversionError(f"{path}:{lineno}: caption of {record['img_id']!r} is not a string")
            pairs.append((record["img_id"], record["text"]))
    else:
        raise ConversionError(f"{path}: unknown caption format {fmt!r}")
    captions = {img_id: text.strip() for img_id, text in pairs if img_id in wanted}
    dropped = [img_id for img_id, _ in pairs if img_id not in wanted]
    return captions, dropped


def caption_json(captions: dict[str, str]) -> bytes:
    """One ``"img_id": "caption"`` per line, UTF-8 as is."""
    return json.dumps(captions, ensure_ascii=False, indent=0).encode("utf-8")


AUX_README = """# Label-carrying auxiliary files: published protocol only

These files come unchanged from zefanZhang-cn/CAMIM (see ../fetch.json for commits and hashes). TMR and
CAMIM (phrases) and HVPNeT (crops) feed them to their models, and every published MNRE number above about
70 micro-F1 is built on them. **They carry the gold label:**

- `phrase_text_{split}.json` ({line number: grounding phrase}): entity-type words ("person",
  "organization", "location") end the phrase only on samples whose relation is not `None`
  (train: 4,422 of 4,503 non-`None` samples, 0 of 7,744 `None`).
- `mre_{split}_dict.pth` (HVPNeT's {line number: [crop file names]}): every `None` sample has exactly 2
  crops, most others 3 or 4; a model that sees the crop count sees the label.

Any number produced with these files is a **published-protocol** number and must say so
(`protocol: published`). pgmre's defaults and headline numbers never read them.
"""


def _put(report: FetchReport, relative: str, data: bytes | Path) -> None:
    """Write one output under ``report.dest`` atomically (``data``: bytes, or a file to copy); record its hash."""
    with atomic_write(report.dest / relative, binary=True) as out:
        if isinstance(data, Path):
            with data.open("rb") as source:
                shutil.copyfileobj(source, out)
        else:
            out.write(data)
    report.outputs[relative] = sha256_of(report.dest / relative)


def _write_aux(files: list[ManifestFile], raw_dir: Path, report: FetchReport) -> None:
    for file in files:
        _put(report, f"{AUX_DIR}/{file.name}", raw_dir / file.mirror_path)
    flags = {
        "label_carrying": True,
        "protocol": "published",
        "files": {
            f.name: {"upstream": f"{f.mirror_path}@{f.commit}", "sha256": f.sha256, "why": f.description}
            for f in files
        },
    }
    _put(report, f"{AUX_DIR}/label_carrying.json", (json.dumps(flags, indent=1) + "\n").encode())
    _put(report, f"{AUX_DIR}/README.md", AUX_README.encode())
    report.notes.append(
        f"{len(files)} label-carrying files in {report.dest / AUX_DIR} (published protocol only; see its README)"
    )


def convert(files: list[ManifestFile], raw_dir: Path, report: FetchReport) -> None:
    """Write pgmre's layout under ``report.dest`` from the verified upstream files of ``files``."""
    vocab = RelationVocab.mnre()
    _put(report, "rel2id.json", (vocab.to_json() + "\n").encode())
    for split in dict.fromkeys(f.split for f in files):
        (text,) = (f for f in files if f.split == split and f.kind == "text")
        raw_text = raw_dir / text.mirror_path
        try:
            samples = read_samples(raw_text, vocab, strict=True).samples
        except DataError as err:
            raise ConversionError(str(err)) from None
        _put(report, f"mnre_{split}.txt", raw_text)
        img_ids = list(dict.fromkeys(s.img_id for s in samples if s.img_id is not None))
        for file in (f for f in files if f.split == split and f.kind == "captions"):
            captions, dropped = upstream_captions(raw_dir / file.mirror_path, file.format, img_ids)
            _put(report, f"captions/{file.source}_{split}.json", caption_json(captions))
            missing = len(img_ids) - len(captions)
            if missing:
                report.notes.append(
                    f"captions/{file.source}_{split}.json: {missing} images of the split have no caption"
                )
            if dropped:
                report.notes.append(
                    f"captions/{file.source}_{split}.json: dropped {len(dropped)} upstream caption(s) of no image "
                    f"of the split ({', '.join(dropped[:3])})"
                )
    aux_files = [f for f in files if f.kind == "aux"]
    if aux_files:
        _write_aux(aux_files, raw_dir, report)


def fetch_mnre(
    dest: str | Path = DEFAULT_DEST,
    splits: Sequence[str] | None = None,
    captions: Sequence[str] | None = None,
    aux: bool = False,
    mirror: str | None = None,
    retry: RetryPolicy | None = None,
    progress: bool = True,
    manifest: Manifest | None = None,
) -> FetchReport:
    """Fetch, verify and convert MNRE into ``dest``; see the module docstring for the layout.

    ``splits`` / ``captions``: default every split / caption source of the manifest. Files fail one by one
    (all are tried) and are listed in ``report.failures``; nothing is converted unless all arrived.
    Raises ``ValueError`` for unknown splits or sources, ``ConversionError`` for an unconvertible file.
    """
    manifest = manifest or load_manifest("mnre")
    dest = Path(dest)
    splits = list(splits) if splits is not None else manifest.splits()
    captions = list(captions) if captions is not None else manifest.caption_sources()
    files = manifest.select(splits, captions, aux)
    origin = open_origin(manifest, mirror, retry)
    report = FetchReport(dest)
    raw_dir = dest / RAW_DIR
    try:
        for split in manifest.splits():
            if split not in splits:
                text = next(f for f in manifest.files if f.split == split and f.kind == "text")
                if origin.available(text) is False:
                    report.unavailable_splits.append(split)
        for file in files:
            try:
                status = fetch_file(origin, file, raw_dir / file.mirror_path, progress)
            except FetchError as err:
                report.failures.append(err)
                continue
            (report.downloaded if status == "downloaded" else report.verified).append(file)
    finally:
        origin.close()
    if not report.ok:
        return report
    convert(files, raw_dir, report)
    provenance = {
        "manifest": manifest.name,
        "origin": mirror or manifest.url,
        "splits": splits,
        "captions": captions,
        "aux": aux,
        "files": [f.model_dump(exclude_defaults=True) for f in files],
        "outputs": report.outputs,
    }
    write_text_atomic(dest / "fetch.json", json.dumps(provenance, indent=1) + "\n")
    return report
