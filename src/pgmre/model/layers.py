"""Small building blocks of the PG-MRE network: MLP, masked cross-attention, masked mean.

Normalisation layers are attributes named ``LayerNorm`` (the BERT convention), so name-based
"no weight decay" rules treat them like the encoder's own.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class MLP(nn.Module):
    """LayerNorm -> Linear -> GELU -> Dropout -> Linear (the paper's MLP of eqs. 4 and 20).

    The input norm keeps concatenations of differently scaled features (e.g. M and T_S) balanced.
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.LayerNorm = nn.LayerNorm(in_dim)
        self.dense_in = nn.Linear(in_dim, hidden_dim)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)
        self.dense_out = nn.Linear(hidden_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.dense_out(self.dropout(self.activation(self.dense_in(self.LayerNorm(x)))))


class Projection(nn.Module):
    """Linear -> LayerNorm -> Dropout: brings frozen features of another width/scale to d."""

    def __init__(self, in_dim: int, out_dim: int, dropout: float) -> None:
        super().__init__()
        self.dense = nn.Linear(in_dim, out_dim)
        self.LayerNorm = nn.LayerNorm(out_dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.LayerNorm(self.dense(x)))


class CrossAttention(nn.Module):
    """CrossAtt(Q, K, V) = softmax(QK^T / sqrt(d)) V with learned projections and heads (eq. 8).

    ``key_mask`` [B, Lk] is true for real keys; padded keys get exactly zero weight. A row without
    any real key returns zeros instead of the NaN a softmax over nothing would give.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.attention = nn.MultiheadAttention(dim, num_heads, dropout=dropout, batch_first=True)

    def forward(
        self, query: Tensor, keys: Tensor, key_mask: Tensor, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        key_mask = key_mask.bool()
        empty = ~key_mask.any(1)
        safe_mask = key_mask.clone()
        safe_mask[empty, 0] = True
        out, weights = self.attention(
            query, keys, keys, key_padding_mask=~safe_mask, need_weights=return_weights
        )
        keep = (~empty).to(out.dtype)[:, None, None]
        return out * keep, (weights * keep if weights is not None else None)


class ResidualCrossAttention(nn.Module):
    """LayerNorm(query + CrossAtt(query, keys, keys)): attention that cannot erase the query.

    Used for eqs. 9-10, where the literal reading attends to a single key and would otherwise replace
    every visual feature by the same projected explanation vector. ``gated``: the attended term is
    scaled by tanh(g) with a learned scalar g = 0 at the start (as in Flamingo's gated cross-attention),
    so the block starts as LayerNorm(query) and the network opens the gate only as far as it helps.
    """

    def __init__(self, dim: int, num_heads: int, dropout: float, gated: bool = False) -> None:
        super().__init__()
        self.cross = CrossAttention(dim, num_heads, dropout)
        self.dropout = nn.Dropout(dropout)
        self.LayerNorm = nn.LayerNorm(dim)
        self.gate = nn.Parameter(torch.zeros(())) if gated else None

    def forward(self, query: Tensor, keys: Tensor, key_mask: Tensor) -> Tensor:
        attended, _ = self.cross(query, keys, key_mask)
        attended = self.dropout(attended)
        if self.gate is not None:
            attended = torch.tanh(self.gate) * attended
        return self.LayerNorm(query + attended)


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``x`` [B, S, D] over the slots where ``mask`` [B, S] is true; zeros when none is."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp_min(1.0)
