"""pgmre: Prototype-Guided Multimodal Relation Extraction (PG-MRE, Zhang et al., AAAI 2025)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pgmre.data.types import Entity, Sample
from pgmre.labels import RelationVocab

if TYPE_CHECKING:
    from pgmre.serve.predictor import Prediction, Predictor, infer

__version__ = "0.1.0"
__all__ = ["Entity", "Prediction", "Predictor", "RelationVocab", "Sample", "__version__", "infer"]

# Imported on first use, so that `import pgmre` does not pull in torch and transformers.
_LAZY = {
    "Predictor": "pgmre.serve.predictor",
    "Prediction": "pgmre.serve.predictor",
    "infer": "pgmre.serve.predictor",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pgmre' has no attribute {name!r}")
