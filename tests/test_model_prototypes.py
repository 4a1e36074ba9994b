"""EMAVectorQuantizer: straight-through gradients, EMA updates by hand, dead-prototype re-seeding."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from pgmre.model.prototypes import EMAVectorQuantizer, kmeans_plus_plus


@pytest.fixture(autouse=True, scope="module")
def _single_thread() -> Iterator[None]:
    """Tiny tensors on a shared 2-core machine: one thread is ~10x faster than contended two."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _bank(prototypes: list[list[float]], decay: float = 0.9, **kwargs: object) -> EMAVectorQuantizer:
    """A quantiser whose prototypes are set by hand (already initialised, unit cluster sizes)."""
    vq = EMAVectorQuantizer(len(prototypes), len(prototypes[0]), decay=decay, init="random", **kwargs)  # type: ignore[arg-type]
    with torch.no_grad():
        vq.prototypes.copy_(torch.tensor(prototypes))
        vq.embed_sum.copy_(vq.prototypes)
    return vq


def test_straight_through_gradient_is_identity_and_prototypes_get_none() -> None:
    vq = _bank([[0.0, 0.0], [10.0, 10.0]], commitment_weight=0.0)
    vq.eval()
    x = torch.tensor([[1.0, 2.0], [9.0, 8.0]], requires_grad=True)
    upstream = torch.tensor([[0.5, -1.0], [2.0, 3.0]])
    out = vq(x)
    assert torch.equal(out.quantized.detach(), vq.prototypes[[0, 1]])  # forward value: the prototype
    (out.quantized * upstream).sum().backward()
    assert x.grad is not None and torch.equal(x.grad, upstream)  # eq. (7): gradient copied to the input
    assert list(vq.parameters()) == [] and not vq.prototypes.requires_grad


def test_commitment_loss_pulls_the_input_towards_its_prototype() -> None:
    vq = _bank([[0.0, 0.0], [10.0, 10.0]], commitment_weight=0.5)
    vq.eval()
    x = torch.tensor([[1.0, 2.0]], requires_grad=True)
    out = vq(x)
    assert out.loss.item() == pytest.approx(0.5 * (1.0 + 4.0) / 2)
    out.loss.backward()
    assert x.grad is not None and torch.allclose(x.grad, 0.5 * 2 * torch.tensor([[1.0, 2.0]]) / 2)


def test_ema_update_matches_hand_computation_and_unused_prototype_keeps_its_value() -> None:
    vq = _bank([[0.0, 0.0], [4.0, 0.0], [100.0, 100.0]], decay=0.9)
    vq.train()
    x = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [3.0, 0.0]])  # two features on prototype 0, one on 1
    out = vq(x)
    assert out.indices.tolist() == [0, 0, 1]
    # cluster sizes: 0.9 * 1 + 0.1 * n; sums: 0.9 * p + 0.1 * sum(x assigned)
    size = torch.tensor([0.9 + 0.2, 0.9 + 0.1, 1.0])
    sums = torch.tensor([[0.0 + 0.1 * 0.0, 0.0 + 0.1 * 2.0], [0.9 * 4.0 + 0.1 * 3.0, 0.0], [100.0, 100.0]])
    total = size.sum()
    smoothed = (size + 1e-5) / (total + 3 * 1e-5) * total  # Laplace smoothing
    assert torch.allclose(vq.cluster_size, size)
    assert torch.allclose(vq.embed_sum, sums)
    assert torch.allclose(vq.prototypes[:2], sums[:2] / smoothed[:2, None])
    assert torch.equal(vq.prototypes[2], torch.tensor([100.0, 100.0]))  # no assignment: unchanged
    assert vq.steps_unused.tolist() == [0, 0, 1]
    # the forward value is the prototype before this step's update
    assert torch.equal(out.quantized[2], torch.tensor([4.0, 0.0]))


def test_eval_mode_assigns_without_updating() -> None:
    vq = _bank([[0.0, 0.0], [4.0, 0.0]])
    vq.eval()
    before = {k: v.clone() for k, v in vq.state_dict().items()}
    out = vq(torch.tensor([[3.5, 0.0], [0.2, 0.1]]))
    assert out.indices.tolist() == [1, 0]
    for key, value in vq.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_masked_rows_are_assigned_but_do_not_update_or_count() -> None:
    vq = _bank([[0.0, 0.0], [4.0, 0.0]], commitment_weight=1.0)
    vq.train()
    out = vq(torch.tensor([[0.0, 0.0], [3.0, 0.0]]), mask=torch.tensor([True, False]))
    assert out.indices.tolist() == [0, 1]
    assert torch.equal(vq.prototypes[1], torch.tensor([4.0, 0.0]))
    assert out.loss.item() == 0.0  # the only valid row sits on its prototype


def test_dead_prototype_is_reseeded_to_a_batch_feature() -> None:
    vq = _bank([[0.0, 0.0], [1000.0, 1000.0]], dead_steps=2)
    vq.train()
    x = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    vq(x)
    assert torch.equal(vq.prototypes[1], torch.tensor([1000.0, 1000.0]))  # unused for 1 step: kept
    vq(x)
    assert any(torch.equal(vq.prototypes[1], row) for row in x)  # unused for 2 steps: re-seeded
    assert vq.steps_unused[1].item() == 0


def test_first_training_batch_initialises_from_data() -> None:
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(4, 3, init="data")
    x = torch.randn(16, 3) * 50 + 100  # far from the N(0, 1) placeholder
    vq.eval()
    vq(x)
    assert not bool(vq.initialised)  # evaluation never initialises
    vq.train()
    vq(x)
    assert bool(vq.initialised)
    # every prototype lies near the data after k-means++ seeding and one EMA step
    assert (torch.cdist(vq.prototypes, x).min(1).values < 50).all()


def test_kmeans_plus_plus_spreads_seeds_and_jitters_repeats() -> None:
    torch.manual_seed(0)
    clusters = torch.tensor([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    x = torch.cat([clusters + 0.01 * torch.randn(3, 2) for _ in range(5)])
    seeds = kmeans_plus_plus(x, 3)
    assert torch.cdist(seeds, clusters).min(0).values.max() < 1.0  # one seed per cluster
    few = kmeans_plus_plus(torch.tensor([[1.0, 2.0], [3.0, 4.0]]), 5)
    assert len(torch.unique(few, dim=0)) == 5


def test_stats_report_usage_and_perplexity_then_reset() -> None:
    vq = _bank([[0.0], [10.0], [20.0]])
    vq.train()
    vq(torch.tensor([[0.1], [9.9], [0.2], [10.1]]))
    stats = vq.stats()
    assert stats["usage"] == [2, 2, 0] and stats["used"] == 2
    assert stats["perplexity"] == pytest.approx(2.0, abs=1e-3)
    assert vq.stats()["usage"] == [0, 0, 0]


def _drifted_batches(steps: int, seed: int = 0) -> list[torch.Tensor]:
    """Four tight clusters that all lie far along e1 from where the bank was initialised."""
    g = torch.Generator().manual_seed(seed)
    centres = 50 * torch.eye(8)[0] + 2 * torch.eye(8)[1:5]
    return [centres.repeat(4, 1) + 0.05 * torch.randn(16, 8, generator=g) for _ in range(steps)]


@pytest.mark.parametrize("refresh_steps", [0, 10])
def test_kmeans_refresh_splits_a_bank_collapsed_by_drift(refresh_steps: int) -> None:
    torch.manual_seed(0)
    vq = EMAVectorQuantizer(4, 8, dead_steps=0, refresh_steps=refresh_steps, refresh_buffer=64)
    vq.train()
    vq(0.01 * torch.randn(16, 8))  # k-means++ seeds near the origin, then the features move away
    vq.stats()
    for batch in _drifted_batches(30):
        out = vq(batch)
    stats = vq.stats()
    if refresh_steps == 0:  # the prototype nearest to the moved cloud takes every feature
        assert stats["used"] == 1 and stats["perplexity"] == pytest.approx(1.0)
    else:  # after a refresh each cluster has its own prototype (the last batch: one per cluster)
        assert len(set(out.indices.view(4, 4)[0].tolist())) == 4
        assert torch.equal(out.indices.view(4, 4), out.indices.view(4, 4)[:1].expand(4, 4))
        assert int(vq.updates) == 31 and vq.cluster_size.sum() == pytest.approx(16, rel=0.05)


def test_kmeans_refresh_is_skipped_until_the_buffer_holds_k_features() -> None:
    vq = _bank([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]], refresh_steps=1)
    before = vq.prototypes.clone()
    vq.train()
    vq(torch.tensor([[0.1, 0.0]]))  # one feature < 3 prototypes: nothing to cluster yet
    assert torch.allclose(vq.prototypes[1:], before[1:])


def test_a_resumed_bank_refreshes_and_counts_as_an_uninterrupted_one() -> None:
    """The trainer saves ``resume_state`` with its own state: a bank restored from it (steps whose rows
    were all masked out included) goes on exactly as the one that was saved."""
    torch.manual_seed(0)
    steps = [(torch.randn(4, 2), torch.tensor([True, True, False, True])) for _ in range(3)]
    steps += [(torch.randn(4, 2), torch.zeros(4, dtype=torch.bool)) for _ in range(2)]  # no valid rows
    later = [(torch.randn(4, 2), None) for _ in range(4)]
    straight = _bank([[0.0, 0.0], [1.0, 1.0]], refresh_steps=7, refresh_buffer=12).train()
    for x, mask in steps:
        straight(x, mask)
    resumed = _bank([[0.0, 0.0], [1.0, 1.0]], refresh_steps=7, refresh_buffer=12).train()
    resumed.load_state_dict(straight.state_dict())
    resumed.load_resume_state(straight.resume_state())
    assert len(resumed._recent) == len(straight._recent) == 5  # the two empty steps keep their place
    for x, mask in later:  # the refresh falls at step 7, inside these
        torch.manual_seed(1)
        straight(x, mask)
        torch.manual_seed(1)
        resumed(x, mask)
    assert int(straight.updates) == int(resumed.updates) == 9
    for name in ("prototypes", "cluster_size", "embed_sum", "usage"):
        assert torch.equal(getattr(straight, name), getattr(resumed, name)), name

    masked_only = _bank([[0.0, 0.0], [1.0, 1.0]], refresh_steps=7).train()  # no feature saved at all
    for x, mask in steps[3:]:
        masked_only(x, mask)
    restored = _bank([[0.0, 0.0], [1.0, 1.0]], refresh_steps=7)
    restored.load_resume_state(masked_only.resume_state())
    assert [len(t) for t in restored._recent] == [0, 0]
