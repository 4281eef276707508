"""Heads that sit on an encoder's features: linear classifiers and MLP projection/prediction heads."""
from __future__ import annotations

from torch import nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, batch_norm: bool = True,
        last_batch_norm: bool = False, last_affine: bool = False) -> nn.Sequential:
    """`layers` linear layers with BatchNorm+ReLU between them (SimCLR/BYOL-style projection head).

    `last_batch_norm` adds a BatchNorm1d (no ReLU) after the output layer, with a learned scale and shift
    if `last_affine` (SimCLR's and lightly's heads) or none (SimSiam's projector). A Linear followed by
    BatchNorm has no bias: the normalisation would remove it.
    """
    mods: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    for i in range(layers):
        last = i == layers - 1
        followed_by_bn = last_batch_norm if last else batch_norm
        mods.append(nn.Linear(dims[i], dims[i + 1], bias=not followed_by_bn))
        if not last:
            if batch_norm:
                mods.append(nn.BatchNorm1d(dims[i + 1]))
            mods.append(nn.ReLU(inplace=True))
    if last_batch_norm:
        mods.append(nn.BatchNorm1d(out_dim, affine=last_affine))
    return nn.Sequential(*mods)
