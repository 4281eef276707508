"""Heads that sit on an encoder's features: linear classifiers and MLP projection/prediction heads."""
from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, batch_norm: bool = True,
        last_batch_norm: bool = False) -> nn.Sequential:
    """`layers` linear layers with BatchNorm+ReLU between them (SimCLR/BYOL-style projection head)."""
    mods: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    for i in range(layers):
        last = i == layers - 1
        mods.append(nn.Linear(dims[i], dims[i + 1], bias=not (batch_norm and not last)))
        if not last:
            if batch_norm:
                mods.append(nn.BatchNorm1d(dims[i + 1]))
            mods.append(nn.ReLU(inplace=True))
    if last_batch_norm:
        mods.append(nn.BatchNorm1d(out_dim, affine=False))
    return nn.Sequential(*mods)
