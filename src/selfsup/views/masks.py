"""Batched mask generators: image masks for inpainting (Pathak et al., 2016) and patch masks for MAE.

Image masks are bool (N, 1, H, W) tensors, True where pixels are hidden. Patch masks follow MAE
(He et al., 2022): per-sample random shuffling of the patch indices, True where a patch is hidden.
Random draws use the CPU generator (so seeds reproduce) and are moved to `device`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def block_mask(tops: Tensor, lefts: Tensor, size: int, height: int, width: int) -> Tensor:
    """The union of `size`-pixel squares at top-left corners (tops, lefts), each (N, K) -> (N, 1, H, W)."""
    rows = torch.arange(height, device=tops.device)
    cols = torch.arange(width, device=tops.device)
    in_rows = (rows >= tops[..., None]) & (rows < tops[..., None] + size)  # (N, K, H)
    in_cols = (cols >= lefts[..., None]) & (cols < lefts[..., None] + size)  # (N, K, W)
    return (in_rows[..., :, None] & in_cols[..., None, :]).any(dim=1, keepdim=True)


def central_block_mask(n: int, height: int, width: int, fraction: float = 0.5,
                       device: torch.device | str = "cpu") -> Tensor:
    """The central square of side `fraction` of the image side (Pathak: the central 64x64 of 128x128)."""
    size = round(fraction * min(height, width))
    top, left = (height - size) // 2, (width - size) // 2
    corner = torch.tensor([[top]], device=device).expand(n, 1)
    return block_mask(corner, torch.full_like(corner, left), size, height, width)


def random_block_mask(n: int, height: int, width: int, size: int, count: int,
                      device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
    """`count` squares of `size` pixels at uniform random places, possibly overlapping (Pathak's random
    blocks: several smaller holes covering at most count * size^2 pixels)."""
    tops = torch.randint(0, height - size + 1, (n, count), generator=generator).to(device)
    lefts = torch.randint(0, width - size + 1, (n, count), generator=generator).to(device)
    return block_mask(tops, lefts, size, height, width)


def random_region_mask(n: int, height: int, width: int, fraction: float = 0.25, smoothness: int = 4,
                       device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
    """Irregular blobs covering exactly round(fraction * H * W) pixels of every image.

    Stands in for Pathak's random regions (shapes of PASCAL VOC segmentations, not available offline):
    coarse noise at 1/`smoothness` resolution is upsampled into smooth fields and the highest pixels of
    each field are hidden, so every image loses the same number of pixels in a few connected blobs.
    """
    coarse = torch.rand(n, 1, max(1, height // smoothness), max(1, width // smoothness), generator=generator)
    field = F.interpolate(coarse.to(device), size=(height, width), mode="bicubic", align_corners=False)
    field = field + 1e-4 * torch.rand(field.shape, generator=generator).to(device)  # break exact ties
    hidden = round(fraction * height * width)
    top = field.flatten(1).topk(hidden, dim=1).indices
    mask = torch.zeros(n, height * width, dtype=torch.bool, device=device)
    return mask.scatter_(1, top, True).view(n, 1, height, width)


def random_patch_mask(n: int, num_patches: int, ratio: float, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """MAE's per-sample random masking by shuffling: keep int(L * (1 - ratio)) patches of each sample.

    Returns ids_keep (N, K), the kept patch indices in shuffled order; mask (N, L) bool, True where a
    patch is hidden, in the original patch order; ids_restore (N, L), the inverse shuffle, so that
    `cat([kept, hidden]).gather(ids_restore)` puts tokens back in patch order.
    """
    keep = int(num_patches * (1 - ratio))
    shuffle = torch.rand(n, num_patches, generator=generator).to(device).argsort(dim=1)
    restore = shuffle.argsort(dim=1)
    mask = torch.ones(n, num_patches, dtype=torch.bool, device=device)
    mask[:, :keep] = False
    return shuffle[:, :keep], mask.gather(1, restore), restore
