"""The PG-MRE network: prototype banks (``prototypes``), APM/RPM/fusion/classifier (``pgmre``), variants."""

from pgmre.model.pgmre import PGMRE, PGMREOutput
from pgmre.model.prototypes import EMAVectorQuantizer, QuantizerOutput
from pgmre.model.variants import VARIANTS, variant_overrides

__all__ = ["PGMRE", "VARIANTS", "EMAVectorQuantizer", "PGMREOutput", "QuantizerOutput", "variant_overrides"]
