"""Data layer: MNRE reading and validation, subsets, synthetic data."""

from pgmre.data.mnre import DataError, ReadResult, RecordIssue, load_samples, read_samples, write_samples
from pgmre.data.subsets import (
    bundled_vocab_path,
    load_wordpiece_vocab,
    subset_counts,
    unseen_mask,
    untokenizable_mask,
)
from pgmre.data.synthetic import SyntheticDataset, make_synthetic_dataset
from pgmre.data.types import Entity, Sample

__all__ = [
    "DataError",
    "Entity",
    "ReadResult",
    "RecordIssue",
    "Sample",
    "SyntheticDataset",
    "bundled_vocab_path",
    "load_samples",
    "load_wordpiece_vocab",
    "make_synthetic_dataset",
    "read_samples",
    "subset_counts",
    "unseen_mask",
    "untokenizable_mask",
    "write_samples",
]
