"""pgmre: Prototype-Guided Multimodal Relation Extraction (PG-MRE, Zhang et al., AAAI 2025)."""

from pgmre.data.types import Entity, Sample
from pgmre.labels import RelationVocab

__version__ = "0.1.0"
__all__ = ["Entity", "RelationVocab", "Sample", "__version__"]
