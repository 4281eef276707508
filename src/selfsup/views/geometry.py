"""Geometric pseudo-labels built on whole batches."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError

ROTATION_COUNTS = (2, 4, 8)  # RotNet's Table 2: {0, 180}, the four right angles, 45-degree steps


def check_square(images: Tensor) -> None:
    if images.shape[-1] != images.shape[-2]:
        raise ValueError(f"rotation needs square images, got {tuple(images.shape[-2:])}")


def four_rotations(images: Tensor) -> tuple[Tensor, Tensor]:
    """Every image in all four rotations (0, 90, 180, 270 degrees counter-clockwise), in one batch.

    Returns (4N, C, H, W) images ordered rotation-major ([all at 0], [all at 90], ...) and labels
    (4N,) with label k meaning `torch.rot90(x, k, dims=(2, 3))`. Needs square images.
    """
    check_square(images)
    rotated = torch.cat([torch.rot90(images, k, dims=(2, 3)) for k in range(4)])
    labels = torch.arange(4, device=images.device).repeat_interleave(len(images))
    return rotated, labels


def check_rotation_count(rotations: int) -> None:
    if rotations not in ROTATION_COUNTS:
        raise SelfSupError(f"RotNet takes 2, 4 or 8 rotations, got rotations={rotations!r}; use 4 (the paper's "
                           f"0/90/180/270 degrees), 2 (0/180) or 8 (45-degree steps)")


def rotate(images: Tensor, degrees: float) -> Tensor:
    """The whole batch (N, C, H, W) rotated `degrees` counter-clockwise about the image centre, by one
    `affine_grid` + `grid_sample` (bilinear, zeros outside). At 90-degree multiples on square images it
    equals `torch.rot90(images, degrees // 90, dims=(2, 3))` up to float rounding."""
    a = math.radians(degrees)
    # theta maps output coordinates to input ones (x right, y down, in [-1, 1]); this sign is rot90's sense
    theta = torch.tensor([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0]],
                         dtype=images.dtype, device=images.device).expand(len(images), 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def all_rotations(images: Tensor, rotations: int = 4) -> tuple[Tensor, Tensor]:
    """Every image at each of the `rotations` angles k * 360 / rotations degrees (counter-clockwise).

    Returns (rotations * N, C, H, W) images ordered rotation-major ([all at angle 0], [all at angle 1], ...)
    and labels (rotations * N,) = k. Multiples of 90 degrees are exact `torch.rot90`; with 8 rotations the
    four 45-degree ones are the exact ones turned by a further 45 degrees, all in one `rotate` call.
    Needs square images and floats (for 8).
    """
    check_rotation_count(rotations)
    if rotations == 4:
        return four_rotations(images)
    check_square(images)
    if rotations == 2:
        rotated = torch.cat([images, torch.rot90(images, 2, dims=(2, 3))])
    else:
        exact, _ = four_rotations(images)  # (4N, ...): 0, 90, 180, 270
        tilted = rotate(exact, 45.0)  # 45, 135, 225, 315
        rotated = torch.stack([exact.unflatten(0, (4, -1)), tilted.unflatten(0, (4, -1))], dim=1).flatten(0, 2)
    labels = torch.arange(rotations, device=images.device).repeat_interleave(len(images))
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
    padded = F.pad(images, (padding,) * 4)
    rows = dy[:, None] + torch.arange(h)  # (N, H) rows of the padded image to keep
    cols = dx[:, None] + torch.arange(w)  # (N, W)
    cols = torch.where(mirror[:, None], cols.flip(1), cols)
    device = images.device
    batch = torch.arange(n, device=device)[:, None, None]
    out = padded[batch, :, rows.to(device)[:, :, None], cols.to(device)[:, None, :]]  # (N, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def fit_to_size(x: Tensor, height: int, width: int) -> Tensor:
    """Centre-pad with zeros (black L, neutral ab) or centre-crop (N, C, H, W) to (height, width)."""
    dh, dw = height - x.shape[-2], width - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    # F.pad with negative amounts crops, so one call handles both directions on each axis.
    return F.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))
