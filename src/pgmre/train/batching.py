"""Length-bucketed training batches: less padding, same randomness.

Batches are padded to their longest post, so a batch of one 120-token post and fifteen 30-token ones
costs four times what it needs. The epoch's shuffled order is cut into pools of ``pool`` batches, each
pool is sorted by length and cut into batches, and the batches are shuffled again: every batch is
still a random draw from a random pool (the usual "bucket iterator"), but holds posts of similar
length. The whole list is a pure function of (order, lengths, seed, epoch), so a resumed run skips
to the same batch it stopped at.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def epoch_batches(
    order: Sequence[int],
    batch_size: int,
    lengths: Sequence[int] | None = None,
    pool: int = 0,
    seed: int = 0,
    epoch: int = 0,
) -> list[list[int]]:
    """This epoch's batches of dataset indices, in order.

    ``pool == 0`` or no ``lengths``: consecutive slices of ``order`` (the plain shuffled order).
    """
    if pool <= 0 or lengths is None or len(order) <= batch_size:
        return [list(order[i : i + batch_size]) for i in range(0, len(order), batch_size)]
    span = pool * batch_size
    batches: list[list[int]] = []
    for start in range(0, len(order), span):
        chunk = sorted(order[start : start + span], key=lambda i: lengths[i])  # stable: ties keep order
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch + 7919)
    return [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
