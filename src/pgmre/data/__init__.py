"""Data layer: MNRE reading and validation, subsets, synthetic data."""

from pgmre.data.types import Entity, Sample

__all__ = ["Entity", "Sample"]
