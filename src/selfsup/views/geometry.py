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


def random_shift_flip(images: Tensor, padding: int = 2, flip: bool = True,
                      generator: torch.Generator | None = None) -> Tensor:
    """The light augmentation of supervised training on small images: zero-pad by `padding`, crop back to
    the original size at a random offset, and mirror left-right with probability 1/2 when `flip`.

    Works on any dtype (uint8 stays uint8) and on the whole batch at once: one gather with per-image
    offsets, no per-image Python. The random draws come from `generator` (on the CPU) or torch's global one.
    """
    n, _, h, w = images.shape
    draw = dict(generator=generator)
    dy, dx = (torch.randint(0, 2 * padding + 1, (n,), **draw) for _ in range(2))
    mirror = torch.rand(n, **draw) < 0.5 if flip else torch.zeros(n, dtype=torch.bool)
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    rows = dy[:, None] + torch.arange(h)  # (N, H) rows of the padded image to keep
    cols = dx[:, None] + torch.arange(w)  # (N, W)
    cols = torch.where(mirror[:, None], cols.flip(1), cols)
    device = images.device
    batch = torch.arange(n, device=device)[:, None, None]
    out = padded[batch, :, rows.to(device)[:, :, None], cols.to(device)[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()
