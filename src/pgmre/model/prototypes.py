"""A bank of prototypes learnt by nearest-neighbour assignment and momentum (EMA) averaging.

One module serves both the attribute prototypes (APM, eqs. 3-7) and the relation prototypes (RPM,
eqs. 12-14). It follows VQ-VAE with EMA codebook updates (van den Oord et al. 2017, appendix A.1):
the forward pass returns the nearest prototype with a straight-through gradient, and in training mode
the prototypes move to the momentum average of the features assigned to them. The prototypes are
buffers, not parameters: no optimiser touches them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    quantized: Tensor  # [N, D] value of the nearest prototype, gradient of the input (eq. 7)
    indices: Tensor  # [N] index of the nearest prototype (eq. 6)
    loss: Tensor  # scalar commitment loss, already weighted
    perplexity: Tensor  # scalar: exp(entropy) of this batch's assignments


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def _all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum batch statistics over DDP ranks so every rank applies the same EMA update."""
    if _distributed():
        dist.all_reduce(tensor)
    return tensor


def _perplexity(counts: Tensor) -> Tensor:
    probs = counts / counts.sum().clamp_min(1e-12)
    return torch.exp(-(probs * torch.log(probs.clamp_min(1e-12))).sum())


def squared_distances(x: Tensor, prototypes: Tensor) -> Tensor:
    """[N, K] squared Euclidean distances; the expanded form avoids an [N, K, D] tensor."""
    return x.pow(2).sum(1, keepdim=True) - 2 * x @ prototypes.t() + prototypes.pow(2).sum(1)


def kmeans_plus_plus(x: Tensor, k: int) -> Tensor:
    """``k`` seeds picked from the rows of ``x`` by k-means++ (D² sampling).

    When ``x`` has fewer distinct rows than ``k``, the extra seeds repeat rows with a small jitter so
    that they can separate later instead of staying identical forever.
    """
    picks = [int(torch.randint(len(x), (1,)).item())]
    closest = (x - x[picks[0]]).pow(2).sum(1)
    for _ in range(1, k):
        total = closest.sum()
        weights = closest / total if total > 0 else torch.full_like(closest, 1.0 / len(x))
        pick = int(torch.multinomial(weights, 1).item())
        picks.append(pick)
        closest = torch.minimum(closest, (x - x[pick]).pow(2).sum(1))
    index = torch.tensor(picks, device=x.device)
    seeds = x[index].clone()
    repeated = torch.zeros(k, dtype=torch.bool, device=x.device)
    for i, pick in enumerate(picks):
        repeated[i] = pick in picks[:i]
    if repeated.any():
        scale = 1e-2 * x.std().clamp_min(1e-6)
        seeds[repeated] += scale * torch.randn_like(seeds[repeated])
    return seeds


def kmeans(x: Tensor, k: int, iterations: int = 10) -> tuple[Tensor, Tensor]:
    """Lloyd's k-means from k-means++ seeds: ``(centres [k, D], members per centre [k])``.

    A centre that loses all its members keeps its previous position.
    """
    centres = kmeans_plus_plus(x, k)
    for _ in range(iterations):
        assign = squared_distances(x, centres).argmin(1)
        counts = torch.bincount(assign, minlength=k).float()
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp_min(1)[:, None], centres)
    counts = torch.bincount(squared_distances(x, centres).argmin(1), minlength=k).float()
    return centres, counts


class EMAVectorQuantizer(nn.Module):
    """Nearest-prototype assignment with straight-through gradients and EMA prototype updates.

    ``decay``: momentum of the cluster-size and feature-sum averages. ``commitment_weight``: weight of
    ``||x - sg[p]||²`` that keeps features near their prototype. ``dead_steps``: a prototype that no
    feature chose for this many training steps is re-seeded to a random feature of the current batch
    (0 disables it). ``init="data"``: the bank starts from k-means++ picks of the first training batch
    (random noise of the wrong scale tends to leave all features on one prototype).
    ``refresh_steps``: every this many training steps, the whole bank is reset to k-means centres of the
    last ``refresh_buffer`` training features (0 disables it). While the encoder and MLPs move fast,
    the one prototype nearest to the drifting feature cloud can take every assignment and the EMA
    alone never splits it again; a k-means reset does (measured in benchmarks/prototype_usage.py).
    """

    def __init__(
        self,
        num_prototypes: int,
        dim: int,
        decay: float = 0.99,
        commitment_weight: float = 0.25,
        dead_steps: int = 200,
        init: Literal["data", "random"] = "data",
        eps: float = 1e-5,
        refresh_steps: int = 0,
        refresh_buffer: int = 1024,
    ) -> None:
        super().__init__()
        self.num_prototypes = num_prototypes
        self.dim = dim
        self.decay = decay
        self.commitment_weight = commitment_weight
        self.dead_steps = dead_steps
        self.eps = eps
        self.refresh_steps = refresh_steps
        self.refresh_buffer = refresh_buffer
        prototypes = torch.randn(num_prototypes, dim)
        self.register_buffer("prototypes", prototypes)  # eq. (3) / eq. (12)
        self.register_buffer("cluster_size", torch.ones(num_prototypes))
        self.register_buffer("embed_sum", prototypes.clone())
        self.register_buffer("initialised", torch.tensor(init == "random"))
        self.register_buffer("steps_unused", torch.zeros(num_prototypes, dtype=torch.long))
        # the latest training features and the training steps seen, for refresh: not in the weights (so
        # checkpoints stay loadable across versions) but in the trainer's state (``resume_state``), so
        # that a resumed run refreshes on the same schedule and features
        self._recent: list[Tensor] = []
        self.register_buffer("updates", torch.zeros((), dtype=torch.long), persistent=False)
        # Training-time assignment counts since the last read of stats(); logging only (in the trainer's
        # state, not in the weights).
        self.register_buffer("usage", torch.zeros(num_prototypes), persistent=False)

    prototypes: Tensor
    cluster_size: Tensor
    embed_sum: Tensor
    initialised: Tensor
    steps_unused: Tensor
    updates: Tensor
    usage: Tensor

    def extra_repr(self) -> str:
        return f"num_prototypes={self.num_prototypes}, dim={self.dim}, decay={self.decay}"

    def forward(self, x: Tensor, mask: Tensor | None = None) -> QuantizerOutput:
        """Quantise rows of ``x`` [N, D]; rows where ``mask`` is false are assigned but neither update
        the prototypes nor count in the commitment loss (e.g. samples without any visual slot)."""
        with torch.autocast(device_type=x.device.type, enabled=False):
            flat = x.float()
            valid = (
                torch.ones(len(flat), dtype=torch.bool, device=flat.device) if mask is None else mask.bool()
            )
            # the global count decides, so that every DDP rank takes the same branch
            if (
                self.training
                and not bool(self.initialised)
                and _all_reduce_sum(valid.sum().float().reshape(1)).item() > 0
            ):
                self._initialise(flat.detach()[valid])
            indices = squared_distances(flat.detach(), self.prototypes).argmin(1)  # eq. (6) / eq. (14)
            chosen = self.prototypes[indices]
            counts = torch.bincount(indices[valid], minlength=self.num_prototypes).float()
            if self.training:
                self._ema_update(flat.detach()[valid], indices[valid], counts)
            if bool(valid.any()) and self.commitment_weight > 0:
                loss = self.commitment_weight * F.mse_loss(flat[valid], chosen[valid])
            else:
                loss = flat.sum() * 0.0
            quantized = flat + (chosen - flat).detach()  # eq. (7): sg[p_j - x] + x
        return QuantizerOutput(quantized.to(x.dtype), indices, loss, _perplexity(counts))

    @torch.no_grad()
    def _initialise(self, x: Tensor) -> None:
        # a rank without features keeps its placeholder; rank 0's seeds overwrite it anyway
        seeds = kmeans_plus_plus(x, self.num_prototypes) if len(x) else self.prototypes.clone()
        self.prototypes.copy_(seeds)
        self.embed_sum.copy_(seeds)
        self.cluster_size.fill_(1.0)
        self.initialised.fill_(True)
        self._sync_from_rank0()

    @torch.no_grad()
    def _ema_update(self, x: Tensor, indices: Tensor, counts: Tensor) -> None:
        """Momentum average of the features assigned to each prototype, with Laplace smoothing.

        Only prototypes that received features this step move; the others keep their value and
        statistics exactly (the paper: "when the prototypes possess a non-zero count of features").
        """
        sums = torch.zeros_like(self.embed_sum).index_add_(0, indices, x)
        counts = _all_reduce_sum(counts.clone())
        sums = _all_reduce_sum(sums)
        used = counts > 0
        d = self.decay
        self.cluster_size.copy_(
            torch.where(used, d * self.cluster_size + (1 - d) * counts, self.cluster_size)
        )
        self.embed_sum.copy_(torch.where(used[:, None], d * self.embed_sum + (1 - d) * sums, self.embed_sum))
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.eps) / (total + self.num_prototypes * self.eps) * total
        self.prototypes.copy_(torch.where(used[:, None], self.embed_sum / smoothed[:, None], self.prototypes))
        self.usage += counts
        self.steps_unused.copy_(torch.where(used, torch.zeros_like(self.steps_unused), self.steps_unused + 1))
        if self.dead_steps > 0 and bool(used.any()):
            self._reseed(self.steps_unused >= self.dead_steps, x)
        self.updates += 1
        if self.refresh_steps > 0:
            self._recent.append(x)
            while sum(len(t) for t in self._recent) - len(self._recent[0]) >= self.refresh_buffer:
                self._recent.pop(0)
            if int(self.updates) % self.refresh_steps == 0:
                self._refresh()

    def resume_state(self) -> dict[str, Tensor]:
        """What the bank remembers between training steps outside its weights (the step count and
        recent features of the k-means refresh, the usage counts since the last log): the trainer saves
        it with its own state, so that a resumed run refreshes and logs exactly as an uninterrupted one."""
        return {
            "updates": self.updates.detach().cpu().clone(),
            "usage": self.usage.detach().cpu().clone(),
            "recent": torch.cat(self._recent).cpu() if self._recent else torch.zeros(0, self.dim),
            # a step whose rows were all masked out keeps its (empty) place in the buffer
            "recent_sizes": torch.tensor([len(t) for t in self._recent], dtype=torch.long),
        }

    def load_resume_state(self, state: dict[str, Tensor]) -> None:
        self.updates.copy_(state["updates"])
        self.usage.copy_(state["usage"])
        recent = state["recent"].to(self.prototypes.device)
        self._recent = list(recent.split(state["recent_sizes"].tolist()))

    @torch.no_grad()
    def _refresh(self) -> None:
        """Reset the bank to k-means centres of the recent features (rank 0's, broadcast under DDP)."""
        recent = torch.cat(self._recent) if self._recent else self.prototypes[:0]
        if len(recent) >= self.num_prototypes:  # else too few features to cluster yet: keep the bank
            centres, members = kmeans(recent, self.num_prototypes)
            # EMA statistics in per-step units, so the next updates weigh the refreshed centres as usual
            size = (members / len(self._recent)).clamp_min(self.eps)
            self.prototypes.copy_(centres)
            self.cluster_size.copy_(size)
            self.embed_sum.copy_(centres * size[:, None])
        # identical on every rank (it drives the collective in _reseed), whatever each decided above
        self.steps_unused.zero_()
        self._sync_from_rank0()  # every rank joins the broadcast

    @torch.no_grad()
    def _reseed(self, dead: Tensor, x: Tensor) -> None:
        """Move prototypes nobody chose for ``dead_steps`` steps onto random features of this batch."""
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        if len(x):
            picks = x[torch.randint(len(x), (n_dead,), device=x.device)]
        else:  # no local features on this rank: placeholder until rank 0's broadcast
            picks = self.prototypes[dead].clone()
        self.prototypes[dead] = picks
        self.embed_sum[dead] = picks
        self.cluster_size[dead] = 1.0
        self.steps_unused[dead] = 0
        self._sync_from_rank0()

    def _sync_from_rank0(self) -> None:
        """Random seeds differ per rank; rank 0's choice wins so the banks stay identical."""
        if _distributed():
            for buffer in (self.prototypes, self.embed_sum, self.cluster_size):
                dist.broadcast(buffer, 0)

    def stats(self, reset: bool = True) -> dict[str, Any]:
        """Training-time usage since the last call: counts, prototypes used, perplexity (JSON-able)."""
        usage = self.usage.detach().cpu()
        result = {
            "usage": [int(c) for c in usage.tolist()],
            "used": int((usage > 0).sum()),
            "perplexity": round(float(_perplexity(usage)), 4) if usage.sum() > 0 else 0.0,
            "max_steps_unused": int(self.steps_unused.max()),
        }
        if reset:
            self.usage.zero_()
        return result


def resume_states(model: nn.Module) -> dict[str, dict[str, Tensor]]:
    """Every prototype bank's :meth:`EMAVectorQuantizer.resume_state`, by module name."""
    return {name: m.resume_state() for name, m in model.named_modules() if isinstance(m, EMAVectorQuantizer)}


def load_resume_states(model: nn.Module, states: dict[str, dict[str, Tensor]]) -> None:
    """Restore what :func:`resume_states` saved (banks it does not name start afresh: an older run)."""
    for name, module in model.named_modules():
        if isinstance(module, EMAVectorQuantizer) and name in states:
            module.load_resume_state(states[name])
