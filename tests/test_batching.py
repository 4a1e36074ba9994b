"""Length-bucketed training batches and the AdamW kernel choice."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from pgmre.config import TrainConfig
from pgmre.train.batching import epoch_batches
from pgmre.train.optim import adamw_kernel, build_optimizer, keep_optimizer_kernel


def _padding(batches: list[list[int]], lengths: list[int]) -> int:
    return sum(max(lengths[i] for i in b) * len(b) - sum(lengths[i] for i in b) for b in batches)


def test_no_pool_is_the_plain_order() -> None:
    order = [5, 3, 0, 1, 4, 2, 6]
    assert epoch_batches(order, 3) == [[5, 3, 0], [1, 4, 2], [6]]
    assert epoch_batches(order, 3, lengths=[1] * 7, pool=0) == [[5, 3, 0], [1, 4, 2], [6]]


def test_buckets_cut_padding_and_stay_random() -> None:
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(5, 120, (2000,), generator=gen).tolist()
    order = torch.randperm(2000, generator=gen).tolist()
    plain = epoch_batches(order, 16)
    bucketed = epoch_batches(order, 16, lengths, pool=50, seed=1, epoch=0)
    assert _padding(bucketed, lengths) < 0.2 * _padding(plain, lengths)
    assert epoch_batches(order, 16, lengths, pool=50, seed=1, epoch=0) == bucketed  # resumable
    assert epoch_batches(order, 16, lengths, pool=50, seed=1, epoch=1) != bucketed
    # the first batches are not the shortest posts: batches are shuffled after bucketing
    firsts = [sum(lengths[i] for i in b) / len(b) for b in bucketed[:10]]
    assert max(firsts) - min(firsts) > 20


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    n=st.integers(0, 300),
    batch_size=st.integers(1, 40),
    pool=st.integers(0, 8),
    seed=st.integers(0, 10),
)
def test_every_sample_once_and_batches_full(n: int, batch_size: int, pool: int, seed: int) -> None:
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    lengths = [(7 * i) % 53 for i in range(n)]
    batches = epoch_batches(order, batch_size, lengths, pool=pool, seed=seed, epoch=seed)
    assert sorted(i for b in batches for i in b) == sorted(order)
    assert len(batches) == -(-n // batch_size)  # pools are whole batches: only the last one can be short
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert sum(len(b) < batch_size for b in batches) <= 1


def test_adamw_kernel_choice() -> None:
    assert adamw_kernel("auto", torch.device("cpu")) == {"fused": True}
    assert adamw_kernel("foreach", torch.device("cpu")) == {"foreach": True}
    assert adamw_kernel("for-loop", torch.device("cpu")) == {"foreach": False}
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4))
    optimizer, _ = build_optimizer(model, TrainConfig(warmup_ratio=0.0), total_steps=10)
    assert optimizer.defaults["fused"] is True
    loss = model(torch.randn(3, 4)).pow(2).sum()
    loss.backward()
    before = model[0].weight.detach().clone()
    optimizer.step()
    assert not torch.equal(before, model[0].weight)


def test_a_loaded_optimizer_state_keeps_the_configured_kernel() -> None:
    """``load_state_dict`` copies the saved groups' ``fused``/``foreach`` back: a resumed run re-applies
    its configured kernel."""
    model = torch.nn.Linear(4, 4)
    saved, _ = build_optimizer(model, TrainConfig(optimizer_impl="for-loop"), total_steps=10)
    resumed, _ = build_optimizer(model, TrainConfig(optimizer_impl="fused"), total_steps=10)
    resumed.load_state_dict(saved.state_dict())
    assert not resumed.param_groups[0]["fused"]
    keep_optimizer_kernel(resumed, "fused")
    assert all(g["fused"] is True for g in resumed.param_groups)
