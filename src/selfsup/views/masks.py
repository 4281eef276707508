"""Batched mask generators: image masks for inpainting (Pathak et al., 2016), patch masks for MAE and
I-JEPA's multi-block masks.

Image masks are bool (N, 1, H, W) tensors, True where pixels are hidden. Patch masks follow MAE
(He et al., 2022): per-sample random shuffling of the patch indices, True where a patch is hidden.
Multi-block masks follow I-JEPA (Assran et al., 2023): rectangles of patches on the patch grid.
Random draws use the CPU generator (so seeds reproduce) and are moved to `device`.
"""
from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError


def rectangle_masks(tops: Tensor, lefts: Tensor, height: int, width: int, rows: int, cols: int) -> Tensor:
    """`height` x `width` rectangles at top-left corners (tops, lefts), each (N, K), on a rows x cols grid
    -> bool (N, K, rows, cols), one mask per rectangle."""
    r = torch.arange(rows, device=tops.device)
    c = torch.arange(cols, device=tops.device)
    in_rows = (r >= tops[..., None]) & (r < tops[..., None] + height)  # (N, K, rows)
    in_cols = (c >= lefts[..., None]) & (c < lefts[..., None] + width)  # (N, K, cols)
    return in_rows[..., :, None] & in_cols[..., None, :]


def block_mask(tops: Tensor, lefts: Tensor, size: int, height: int, width: int) -> Tensor:
    """The union of `size`-pixel squares at top-left corners (tops, lefts), each (N, K) -> (N, 1, H, W)."""
    return rectangle_masks(tops, lefts, size, size, height, width).any(dim=1, keepdim=True)


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


# --- I-JEPA's multi-block masks ----------------------------------------------------------------------------
class MultiBlockMasks(NamedTuple):
    """Patch indices (raster order on the grid) of I-JEPA's context and target blocks.

    context: (N, Kc), the context block without the target blocks, cut to the batch's smallest context;
    targets: (N, M, Kt), each of the M target blocks whole (every block of a batch has the same shape).
    """

    context: Tensor
    targets: Tensor


def block_shape(grid: int, scale: float, aspect: float) -> tuple[int, int]:
    """(height, width) in patches of a block covering `scale` of a grid x grid patch grid with
    height / width = `aspect`, as in the reference code: keep = int(grid^2 * scale) patches,
    height = round(sqrt(keep * aspect)), width = round(sqrt(keep / aspect)), clamped to [1, grid]."""
    keep = int(grid * grid * scale)
    height, width = round(math.sqrt(keep * aspect)), round(math.sqrt(keep / aspect))
    return min(max(height, 1), grid), min(max(width, 1), grid)


def random_rectangles(n: int, count: int, shape: tuple[int, int], grid: int, device: torch.device | str = "cpu",
                      generator: torch.Generator | None = None) -> Tensor:
    """`count` rectangles of `shape` at uniform random places on the grid, per sample -> bool (N, count, L)."""
    height, width = shape
    tops = torch.randint(0, grid - height + 1, (n, count), generator=generator).to(device)
    lefts = torch.randint(0, grid - width + 1, (n, count), generator=generator).to(device)
    return rectangle_masks(tops, lefts, height, width, grid, grid).flatten(2)


def _uniform(bounds: tuple[float, float], generator: torch.Generator | None) -> float:
    low, high = bounds
    return low + float(torch.rand(1, generator=generator)) * (high - low)


def first_true(mask: Tensor, k: int) -> Tensor:
    """Indices of the first `k` True entries along the last dimension, in order (each row has >= k)."""
    return torch.argsort((~mask).to(torch.uint8), dim=-1, stable=True)[..., :k]


def multiblock_masks(n: int, grid: int, targets: int = 4, target_scale: tuple[float, float] = (0.15, 0.2),
                     target_aspect: tuple[float, float] = (0.75, 1.5),
                     context_scale: tuple[float, float] = (0.85, 1.0), min_context: int = 4,
                     device: torch.device | str = "cpu", generator: torch.Generator | None = None,
                     tries: int = 20) -> MultiBlockMasks:
    """I-JEPA's masks for a batch of n images on a grid x grid patch grid (Assran et al., 2023, section 3).

    Block shapes are drawn once per batch, as in the reference code: a target shape (scale in
    `target_scale`, aspect height/width in `target_aspect`) shared by all `targets` blocks, and a square
    context shape (scale in `context_scale`). Each image then gets its own positions. The context is its
    block minus every target block, so it never sees a target patch. An image whose context keeps fewer
    than `min_context` patches draws all its blocks again (batched over those images, `tries` times).
    """
    target_shape = block_shape(grid, _uniform(target_scale, generator), _uniform(target_aspect, generator))
    context_shape = block_shape(grid, _uniform(context_scale, generator), 1.0)

    def draw(k: int) -> tuple[Tensor, Tensor]:
        target = random_rectangles(k, targets, target_shape, grid, device, generator)  # (k, M, L)
        context = random_rectangles(k, 1, context_shape, grid, device, generator)[:, 0] & ~target.any(dim=1)
        return target, context

    target, context = draw(n)
    for attempt in range(tries + 1):
        short = context.sum(dim=1) < min_context
        if not short.any():
            break
        if attempt == tries:
            raise SelfSupError(f"I-JEPA masks: {targets} target blocks of {target_shape[0]}x{target_shape[1]} "
                               f"patches leave fewer than min_context={min_context} context patches on a "
                               f"{grid}x{grid} grid; use fewer or smaller target blocks, or a smaller min_context")
        target[short], context[short] = draw(int(short.sum()))
    keep = int(context.sum(dim=1).min())  # the reference cuts every context to the batch's smallest
    return MultiBlockMasks(first_true(context, keep), first_true(target, target_shape[0] * target_shape[1]))
