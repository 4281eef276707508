"""Geometric pseudo-labels built on whole batches."""
from __future__ import annotations

import torch
from torch import Tensor


def four_rotations(images: Tensor) -> tuple[Tensor, Tensor]:
    """Every image in all four rotations (0, 90, 180, 270 degrees counter-clockwise), in one batch.

    Returns (4N, C, H, W) images ordered rotation-major ([all at 0], [all at 90], ...) and labels
    (4N,) with label k meaning `torch.rot90(x, k, dims=(2, 3))`. Needs square images.
    """
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(images.shape[-2:])}")
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=images.device).repeat_interleave(len(images))
    return rotated, labels
