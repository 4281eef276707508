"""Batched patch and tile extraction for the spatial-context pretext tasks (patch location, jigsaw).

Everything works on whole batches on the batch's device: positions are drawn as (N, K) tensors of
top-left corners and `crop_patches` gathers all N*K crops with one advanced-indexing call.
The 3x3 neighbour layout is raster order: position 0 is top-left, 4 the centre, 8 bottom-right.
"""
from __future__ import annotations

import torch
from torch import Tensor

# (row, column) step of each of the 8 neighbours of the centre patch, raster order without the centre.
NEIGHBOUR_OFFSETS: tuple[tuple[int, int], ...] = ((-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1))


def crop_patches(images: Tensor, tops: Tensor, lefts: Tensor, size: int) -> Tensor:
    """Square crops of `size` at top-left corners (tops, lefts), both (N, K) -> (N, K, C, size, size)."""
    n, k = tops.shape
    steps = torch.arange(size, device=images.device)
    rows = (tops[..., None] + steps).view(n, k, size, 1)
    cols = (lefts[..., None] + steps).view(n, k, 1, size)
    sample = torch.arange(n, device=images.device).view(n, 1, 1, 1)
    channels_last = images.permute(0, 2, 3, 1)  # so the advanced indices give (N, K, s, s, C) in order
    return channels_last[sample, rows, cols].permute(0, 1, 4, 2, 3)


def _randint(high: int, shape: tuple[int, ...], device: torch.device, generator: torch.Generator | None) -> Tensor:
    """Uniform integers in [0, high] (inclusive), drawn on the CPU generator then moved, so seeds reproduce."""
    return torch.randint(0, high + 1, shape, generator=generator).to(device)


def jigsaw_positions(n: int, image_size: int, cell: int, tile: int, device: torch.device | str = "cpu",
                     generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """Top-left corners (N, 9) of 3x3 jigsaw tiles, raster order (Noroozi & Favaro, 2016).

    The 3*cell square grid sits at a random offset inside the image (the paper's random 225 crop of a
    256 image), and each `tile` square sits at a random offset inside its `cell` (the paper's 64 tiles
    in 75 cells): the gaps between tiles vary, so edges and lines cannot be continued across tiles.
    """
    if 3 * cell > image_size or tile > cell:
        raise ValueError(f"a 3x3 grid of {cell}-pixel cells holding {tile}-pixel tiles does not fit {image_size}")
    device = torch.device(device)
    origin = _randint(image_size - 3 * cell, (n, 2), device, generator)
    inner = _randint(cell - tile, (n, 9, 2), device, generator)
    grid = torch.arange(3, device=device) * cell
    tops = origin[:, :1] + grid.repeat_interleave(3) + inner[..., 0]
    lefts = origin[:, 1:] + grid.repeat(3) + inner[..., 1]
    return tops, lefts


def patch_pair_positions(n: int, image_size: int, patch: int, gap: int, jitter: int,
                         device: torch.device | str = "cpu", generator: torch.Generator | None = None
                         ) -> tuple[Tensor, Tensor, Tensor]:
    """A centre patch and one random neighbour per image (Doersch, Gupta & Efros, 2015).

    Returns tops (N, 2) and lefts (N, 2) of [centre, neighbour], and labels (N,) in 0..7 indexing
    NEIGHBOUR_OFFSETS. Neighbours sit `patch + gap` pixels from the centre, each patch moved by up to
    `jitter` pixels in each direction; the whole layout is placed at a random offset in the image.
    """
    pitch = patch + gap
    span = 3 * patch + 2 * gap + 2 * jitter  # the 3x3 layout including the jitter margin
    if span > image_size:
        raise ValueError(f"patch {patch}, gap {gap} and jitter {jitter} need {span} pixels, image has {image_size}")
    device = torch.device(device)
    labels = _randint(7, (n,), device, generator)
    origin = _randint(image_size - span, (n, 2), device, generator)
    shake = _randint(2 * jitter, (n, 2, 2), device, generator)  # in [0, 2*jitter]: jitter around the grid point
    centre = origin + jitter + pitch
    step = torch.tensor(NEIGHBOUR_OFFSETS, device=device)[labels] * pitch
    corners = torch.stack([centre, centre + step], dim=1) - jitter + shake  # (N, 2 patches, 2 coords)
    return corners[..., 0], corners[..., 1], labels


def normalize_each(patches: Tensor, eps: float = 1e-5) -> Tensor:
    """Zero mean, unit std per patch and channel over the last two dims, so brightness and contrast of
    neighbouring patches cannot be matched (the jigsaw paper's per-tile normalisation)."""
    mean = patches.mean(dim=(-2, -1), keepdim=True)
    std = patches.std(dim=(-2, -1), keepdim=True, unbiased=False)
    return (patches - mean) / (std + eps)


def drop_colours(patches: Tensor, noise_std: float = 0.01, generator: torch.Generator | None = None) -> Tensor:
    """Keep one random colour channel per patch and replace the others with small Gaussian noise.

    Doersch et al.'s guard against chromatic aberration (a lens effect that tells where a patch was in
    the frame). `patches` is (..., C, H, W); grayscale (C = 1) passes through unchanged. The noise std is
    `noise_std` times the patch's own channel std, as in the paper (1/100).
    """
    if patches.shape[-3] == 1:
        return patches
    lead, c = patches.shape[:-3], patches.shape[-3]
    keep = torch.randint(0, c, lead, generator=generator).to(patches.device)
    kept = torch.nn.functional.one_hot(keep, c).bool()[..., None, None]  # (..., C, 1, 1)
    scale = patches.std(dim=(-2, -1), keepdim=True, unbiased=False) * noise_std
    noise = torch.randn(patches.shape, generator=generator).to(patches.device) * scale
    return torch.where(kept, patches, noise)
