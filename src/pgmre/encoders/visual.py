"""Visual features per sample from the configured source: ``image``, ``caption`` or ``none``.

Every provider returns a :class:`VisualBatch` with ``1 + m`` slots per sample (``m =
visual.num_objects``): slot 0 is the whole image (or its image-level caption), slots 1..m the objects
(object crops, or the object-level caption sources). Absent objects are masked slots. Features are
frozen, computed per distinct input and cached on disk (see :mod:`pgmre.encoders.feature_cache`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pgmre.config import TextConfig, VisualConfig
from pgmre.data.types import Sample
from pgmre.encoders.bundled import BUNDLED_MINILM
from pgmre.encoders.captions import CaptionEncoder, CaptionTable
from pgmre.encoders.crops import CropIndex, crop_images, load_crop_index, make_crop_extractor
from pgmre.encoders.feature_cache import FeatureCache, content_key, file_content_key
from pgmre.encoders.images import ImageInput, ImageLoadError, decode_image, image_bytes, load_image_encoder
from pgmre.encoders.missing import MissingInputError, MissingReport
from pgmre.encoders.paths import InputPathError, expand

log = logging.getLogger(__name__)


@dataclass
class VisualBatch:
    """``feats [N, S, d]`` float32 and ``mask [N, S]`` bool (False: no input in that slot)."""

    feats: torch.Tensor
    mask: torch.Tensor
    report: MissingReport = field(default_factory=MissingReport)


def _describe(sample: Sample) -> str:
    return sample.img_id or f"{sample.where} (no img_id)"


class _Provider:
    """What the three sources share: slot layout, the missing-input policy and cache statistics."""

    def __init__(self, cfg: VisualConfig, split: str | None, progress: bool) -> None:
        self.cfg = cfg
        self.split = split
        self.progress = progress

    @property
    def num_slots(self) -> int:
        return 1 + self.cfg.num_objects

    @property
    def dim(self) -> int:
        raise NotImplementedError

    @property
    def caches(self) -> list[FeatureCache]:
        return []

    @property
    def cache_stats(self) -> dict[str, int]:
        return {"hits": sum(c.hits for c in self.caches), "misses": sum(c.misses for c in self.caches)}

    def _finish(
        self, feats: torch.Tensor, mask: torch.Tensor, report: MissingReport, missing: str | None
    ) -> VisualBatch:
        """``missing`` (None: ``visual.missing``) says whether a missing input raises or stays blank."""
        if report and (missing or self.cfg.missing) == "error":
            raise MissingInputError(report)
        return VisualBatch(feats, mask, report)


class NoVisualFeatures(_Provider):
    """``visual.source = none``: text only, no slots (``feats [N, 0, 0]``)."""

    @property
    def num_slots(self) -> int:
        return 0

    @property
    def dim(self) -> int:
        return 0

    def features(
        self,
        samples: Sequence[Sample],
        captions: Sequence[str | None] | None = None,
        images: Sequence[ImageInput | None] | None = None,
        missing: str | None = None,
    ) -> VisualBatch:
        return VisualBatch(torch.zeros(len(samples), 0, 0), torch.zeros(len(samples), 0, dtype=torch.bool))


class CaptionFeatures(_Provider):
    """``visual.source = caption``: frozen sentence embeddings of MLLM descriptions of each image."""

    def __init__(
        self, cfg: VisualConfig, text_encoder: str, split: str | None = None, progress: bool = False
    ) -> None:
        super().__init__(cfg, split, progress)
        captions = cfg.captions
        if len(captions.objects) > cfg.num_objects:
            raise ValueError(
                f"visual.captions.objects has {len(captions.objects)} sources but visual.num_objects is "
                f"{cfg.num_objects}: raise num_objects or drop sources"
            )
        self.image_table = CaptionTable(captions.image, split) if captions.image else None
        self.object_tables = [CaptionTable(t, split) for t in captions.objects]
        self.encoder = CaptionEncoder(
            captions.encoder or text_encoder,
            captions.max_length,
            captions.normalize,
            cfg.feature_cache,
            device=cfg.device,
            batch_size=cfg.batch_size,
            progress=progress,
        )

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def caches(self) -> list[FeatureCache]:
        return [self.encoder.cache]

    def features(
        self,
        samples: Sequence[Sample],
        captions: Sequence[str | None] | None = None,
        images: Sequence[ImageInput | None] | None = None,
        missing: str | None = None,
    ) -> VisualBatch:
        """``captions[i]``, when given and not None, is sample i's image-level caption (new posts)."""
        if captions is not None and len(captions) != len(samples):
            raise ValueError(f"got {len(captions)} captions for {len(samples)} samples")
        report = MissingReport()
        texts: list[list[str | None]] = []
        for i, sample in enumerate(samples):
            given = captions[i] if captions is not None else None
            row: list[str | None] = [self._lookup(self.image_table, sample, given, "caption", report)]
            # A post that comes with its own caption is new: the object sources do not know it.
            new_post = given is not None and given.strip() != ""
            for table in self.object_tables:
                row.append(None if new_post else self._lookup(table, sample, None, "object_caption", report))
            texts.append(row)
        vectors = self.encoder.encode(sorted({t for row in texts for t in row if t is not None}))
        feats = torch.zeros(len(samples), self.num_slots, self.dim)
        mask = torch.zeros(len(samples), self.num_slots, dtype=torch.bool)
        for i, row in enumerate(texts):
            for slot, text in enumerate(row):
                if text is not None:
                    feats[i, slot] = vectors[text]
                    mask[i, slot] = True
        return self._finish(feats, mask, report, missing)

    def _lookup(
        self,
        table: CaptionTable | None,
        sample: Sample,
        given: str | None,
        kind: str,
        report: MissingReport,
    ) -> str | None:
        """The caption of one slot; a missing one is added to ``report``."""
        if given is not None and given.strip():
            return given
        reason = None
        text = None
        if table is None:
            reason = "no caption given and visual.captions.image is not set"
        elif sample.img_id is None:
            reason = "sample has no img_id"
        else:
            text = table.get(sample.img_id)
            if text is None:
                reason = f"no caption in {table.label}"
            elif not text:
                text, reason = None, f"empty caption in {table.label}"
        if reason is not None:
            report.add(kind, sample.img_id or _describe(sample), reason)
        return text


@dataclass
class _ImageJob:
    """One distinct image (or crop file) to encode, keyed by the SHA-256 of its bytes.

    Files are hashed by streaming and read again only if they miss the cache, so a whole split's
    images are never held in memory at once.
    """

    key: str
    name: str
    kind: str  # "image" or "crop": the report kind if the bytes do not decode
    path: Path | None = None
    data: bytes | None = None

    @classmethod
    def from_file(cls, path: Path, name: str, kind: str) -> _ImageJob:
        return cls(file_content_key(path), name, kind, path=path)

    def load(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.path is not None
        return self.path.read_bytes()


class ImageFeatures(_Provider):
    """``visual.source = image``: the post image and m object crops through a frozen image encoder.

    How many crops a sample has is label-carrying on MNRE (every ``None`` sample of HVPNeT's crop dicts
    has exactly 2; docs/leakage.md). So unless ``expose_crop_count`` (the published protocol, which masks
    one slot per missing crop as HVPNeT does), every object slot of a sample with an image is filled:
    short crop lists are completed with the whole image, and no mask depends on the count.
    """

    def __init__(
        self,
        cfg: VisualConfig,
        split: str | None = None,
        progress: bool = False,
        expose_crop_count: bool = False,
    ) -> None:
        super().__init__(cfg, split, progress)
        self.expose_crop_count = expose_crop_count
        self.encoder = load_image_encoder(cfg.encoder, cfg.device)
        self.cache = FeatureCache(cfg.feature_cache, {"kind": "image", **self.encoder.spec})
        self.extractor = make_crop_extractor(cfg.crops.auto) if cfg.num_objects > 0 else None
        self.auto_cache = (
            FeatureCache(
                cfg.feature_cache,
                {
                    "kind": "auto-crops",
                    "max_crops": cfg.num_objects,
                    **self.extractor.spec,
                    **self.encoder.spec,
                },
            )
            if self.extractor is not None
            else None
        )
        self._image_dirs: list[Path] | None = None
        self._crop_dirs: list[Path] | None = None
        self._crop_indexes: list[CropIndex] | None = None
        self.auto_crop_images = 0

    @property
    def dim(self) -> int:
        return self.encoder.dim

    @property
    def caches(self) -> list[FeatureCache]:
        return [c for c in (self.cache, self.auto_cache) if c is not None]

    # -- where inputs live -------------------------------------------------------------------------

    @property
    def image_dirs(self) -> list[Path]:
        if self._image_dirs is None:
            self._image_dirs = expand(self.cfg.image_dir, self.split) if self.cfg.image_dir else []
        return self._image_dirs

    @property
    def crop_dirs(self) -> list[Path]:
        if self._crop_dirs is None:
            self._crop_dirs = expand(self.cfg.crops.dir, self.split) if self.cfg.crops.dir else []
        return self._crop_dirs

    @property
    def crop_indexes(self) -> list[CropIndex]:
        """The crop lists; one keyed by line numbers is read only for the split file it was made for."""
        if self._crop_indexes is None:
            template = self.cfg.crops.index
            indexes = [load_crop_index(p) for p in expand(template, self.split)] if template else []
            if self.split is None and any(ix.keyed_by_line for ix in indexes):
                # no split: new posts (predict, serve), whose line numbers say nothing about MNRE's lines
                log.warning(
                    "%s: keyed by sample line numbers of one split; not used without a split "
                    "(object slots come from visual.crops.auto or repeat the image)",
                    template,
                )
                indexes = [ix for ix in indexes if not ix.keyed_by_line]
            elif len(indexes) > 1 and any(ix.keyed_by_line for ix in indexes):
                raise InputPathError(
                    f"{template}: keyed by sample line numbers, which repeat across splits; "
                    "build the visual provider for one split"
                )
            self._crop_indexes = indexes
        return self._crop_indexes

    def _find_file(self, dirs: list[Path], name: str) -> Path | None:
        for directory in dirs:
            path = directory / name
            if path.is_file():
                return path
        return None

    # -- features ----------------------------------------------------------------------------------

    def features(
        self,
        samples: Sequence[Sample],
        captions: Sequence[str | None] | None = None,
        images: Sequence[ImageInput | None] | None = None,
        missing: str | None = None,
    ) -> VisualBatch:
        """``images[i]``, when given and not None, is sample i's post image (a path, bytes or PIL image)."""
        if images is not None and len(images) != len(samples):
            raise ValueError(f"got {len(images)} images for {len(samples)} samples")
        # With missing=blank (prediction on new posts) a post without an image simply gets blank slots.
        if (
            self.cfg.image_dir is None
            and (missing or self.cfg.missing) == "error"
            and (images is None or any(img is None for img in images))
        ):
            raise ValueError(
                "visual.source=image needs visual.image_dir (or an image passed with each sample)"
            )
        report = MissingReport()
        m = self.cfg.num_objects
        post_keys: list[str | None] = []
        crop_keys: list[list[str]] = []
        auto_keys: list[str | None] = []
        jobs: dict[str, _ImageJob] = {}
        for i, sample in enumerate(samples):
            given = images[i] if images is not None else None
            post = self._post_image(sample, given, report)
            post_keys.append(post.key if post else None)
            if post:
                jobs.setdefault(post.key, post)
            listed = self._listed_crops(sample)
            keys: list[str] = []
            auto: str | None = None
            if listed is not None:
                for crop in self._crop_jobs(sample, listed[:m], report):
                    jobs.setdefault(crop.key, crop)
                    keys.append(crop.key)
            elif self.extractor is not None and post is not None:
                auto = post.key
            crop_keys.append(keys)
            auto_keys.append(auto)

        encoded = self.cache.compute(
            list(jobs), self._encode_jobs(jobs), self.cfg.batch_size, self.progress, "images"
        )
        unreadable = {k for k, entry in encoded.items() if "unreadable" in entry}
        for key in unreadable:
            report.add(jobs[key].kind, jobs[key].name, "not a readable image")
        auto_feats = self._auto_crops(sorted({k for k in auto_keys if k and k not in unreadable}), jobs)

        feats = torch.zeros(len(samples), self.num_slots, self.dim)
        mask = torch.zeros(len(samples), self.num_slots, dtype=torch.bool)
        for i in range(len(samples)):
            post_key = post_keys[i]
            if post_key is not None and post_key not in unreadable:
                feats[i, 0] = encoded[post_key]["feats"]
                mask[i, 0] = True
            auto_key = auto_keys[i]
            if auto_key is not None and auto_key in auto_feats:
                rows = list(auto_feats[auto_key])
            else:
                rows = [encoded[k]["feats"] for k in crop_keys[i] if k not in unreadable]
            if not self.expose_crop_count:
                rows = _fill_slots(rows, feats[i, 0] if mask[i, 0] else None, m)
            for slot, row in enumerate(rows[:m], start=1):
                feats[i, slot] = row
                mask[i, slot] = True
        return self._finish(feats, mask, report, missing)

    def _post_image(
        self, sample: Sample, given: ImageInput | None, report: MissingReport
    ) -> _ImageJob | None:
        name = sample.img_id or _describe(sample)
        try:
            if given is not None:
                data = image_bytes(given)
                return _ImageJob(content_key(data), name, "image", data=data)
            if sample.img_id is None:
                report.add("image", name, "sample has no img_id")
                return None
            path = self._find_file(self.image_dirs, sample.img_id)
            if path is None:
                dirs = ", ".join(str(d) for d in self.image_dirs)
                report.add("image", name, f"not found in {dirs}")
                return None
            return _ImageJob.from_file(path, name, "image")
        except OSError as err:
            report.add("image", name, f"cannot read: {err}")
            return None

    def _listed_crops(self, sample: Sample) -> list[str] | None:
        for index in self.crop_indexes:
            found = index.lookup(sample)
            if found is not None:
                return found
        return None

    def _crop_jobs(self, sample: Sample, files: list[str], report: MissingReport) -> list[_ImageJob]:
        jobs = []
        for name in files:
            path = self._find_file(self.crop_dirs, name) if self.crop_dirs else None
            if path is None:
                report.add("crop", f"{_describe(sample)}: {name}", "crop file not found")
                continue
            try:
                jobs.append(_ImageJob.from_file(path, f"{_describe(sample)}: {name}", "crop"))
            except OSError as err:
                report.add("crop", f"{_describe(sample)}: {name}", f"cannot read: {err}")
        return jobs

    def _encode_jobs(self, jobs: dict[str, _ImageJob]) -> Any:
        def encode(keys: list[str]) -> list[dict[str, torch.Tensor]]:
            # Bytes that do not decode never will: the failure is cached too, flagged "unreadable".
            entries: list[dict[str, torch.Tensor]] = []
            pictures = []
            for key in keys:
                try:
                    pictures.append(decode_image(jobs[key].load(), jobs[key].name))
                    entries.append({})
                except ImageLoadError:
                    entries.append({"feats": torch.zeros(self.dim), "unreadable": torch.ones(1)})
            rows = iter(self.encoder.encode(pictures))
            return [entry or {"feats": next(rows)} for entry in entries]

        return encode

    def _auto_crops(self, keys: list[str], jobs: dict[str, _ImageJob]) -> dict[str, torch.Tensor]:
        if not keys or self.auto_cache is None or self.extractor is None:
            return {}
        extractor = self.extractor
        m = self.cfg.num_objects

        def encode(batch: list[str]) -> list[dict[str, torch.Tensor]]:
            out = []
            for key in batch:
                picture = decode_image(jobs[key].load(), jobs[key].name)
                crops = crop_images(picture, extractor.boxes(picture, m))
                self.auto_crop_images += len(crops)
                out.append({"feats": self.encoder.encode(crops) if crops else torch.zeros(0, self.dim)})
            return out

        entries = self.auto_cache.compute(
            keys, encode, max(1, self.cfg.batch_size // max(m, 1)), self.progress, "crops"
        )
        return {k: e["feats"] for k, e in entries.items()}


def _fill_slots(rows: list[torch.Tensor], whole: torch.Tensor | None, m: int) -> list[torch.Tensor]:
    """``m`` object rows: the crops, then the whole image (or the crops again when it is missing)."""
    fillers = [whole] if whole is not None else rows
    if not fillers:
        return rows
    return rows[:m] + [fillers[j % len(fillers)] for j in range(max(0, m - len(rows)))]


def build_visual_provider(
    cfg: VisualConfig,
    text: TextConfig | None = None,
    split: str | None = None,
    progress: bool = False,
    expose_crop_count: bool = False,
) -> NoVisualFeatures | CaptionFeatures | ImageFeatures:
    """The provider of ``visual.source``; ``split`` fills ``{split}`` in paths (None: all splits).

    ``expose_crop_count``: mask missing object crops (the published protocol) instead of filling them.
    """
    if cfg.source == "none":
        return NoVisualFeatures(cfg, split, progress)
    if cfg.source == "caption":
        text_encoder = text.encoder if text is not None else BUNDLED_MINILM
        return CaptionFeatures(cfg, text_encoder, split, progress)
    return ImageFeatures(cfg, split, progress, expose_crop_count)


# The architecture contract's name for the provider family.
VisualFeatures = build_visual_provider

__all__ = [
    "CaptionFeatures",
    "ImageFeatures",
    "MissingInputError",
    "NoVisualFeatures",
    "VisualBatch",
    "VisualFeatures",
    "build_visual_provider",
]
