"""Multi-crop (Caron et al. 2020, SwAV; used again by DINO, Caron et al. 2021): a few large "global" crops
and several small "local" crops of every image, the local ones resampled to fewer pixels, so more views
cost little compute.

Made per batch on the batch's device like `two_views`: each group of crops is one `augment` pass over
`count` copies of the batch (per-sample random boxes, flips and colour factors), resampled straight to the
group's size. The result is a list of crops, crop k of every image in tensor k, in the order of the groups:
global crops first, then local ones.

Scaled for 28x28 (the papers: 224 px global and 96 px local crops): global crops keep the image size, local
crops are 96/224 of its side (12 px at 28, `local_crop_size`); the area fractions are the papers' (a
fraction does not depend on the resolution). Gaussian blur is 3x3 at these sizes, as in `augment`'s presets.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor

from selfsup.errors import SelfSupError
from selfsup.views.augment import ViewConfig, augment
from selfsup.views.basic import to_float


@dataclass(frozen=True)
class CropGroup:
    """`count` crops of every image, each resampled to `size` x `size` pixels with augmentation `view`
    (whose `crop_scale` is the fraction of the image area a crop covers)."""

    count: int
    size: int
    view: ViewConfig


def local_crop_size(image_size: int) -> int:
    """The papers' local crop side relative to the image (96 px of 224): 12 px for 28x28 images."""
    return max(4, round(image_size * 96 / 224))


def multi_crop(images: Tensor, groups: Sequence[CropGroup], generator: torch.Generator | None = None) -> list[Tensor]:
    """Every crop of every image: uint8 or float (N, C, H, W) -> a list of float tensors in [0, 1], crop k of
    each image in tensor k, (N, C, size, size) with its group's size, groups in the order given."""
    x = to_float(images)
    crops: list[Tensor] = []
    for group in groups:
        if group.count < 1 or group.size < 1:
            raise SelfSupError(f"a crop group needs a positive count and size, got {group}")
        # One pass over `count` copies: every transform draws per-sample parameters, so copies differ.
        views = augment(x.repeat(group.count, 1, 1, 1), group.view, generator, size=group.size)
        crops.extend(views.chunk(group.count))
    return crops


def dino_crops(image_size: int, local_crops: int, local_size: int,
               global_scale: tuple[float, float] = (0.4, 1.0),
               local_scale: tuple[float, float] = (0.05, 0.4)) -> list[CropGroup]:
    """DINO's views (the authors' DataAugmentationDINO): flip, colour jitter 0.4/0.4/0.2/0.1 at p 0.8,
    grayscale 0.2; the first global crop always blurred, the second blurred at p 0.1 and solarised at
    p 0.2, local crops blurred at p 0.5."""
    jitter = dict(jitter_p=0.8, brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1, grayscale_p=0.2, blur_kernel=3)
    first = ViewConfig(crop_scale=global_scale, blur_p=1.0, **jitter)
    second = ViewConfig(crop_scale=global_scale, blur_p=0.1, solarize_p=0.2, **jitter)
    local = ViewConfig(crop_scale=local_scale, blur_p=0.5, **jitter)
    groups = [CropGroup(1, image_size, first), CropGroup(1, image_size, second)]
    if local_crops:
        groups.append(CropGroup(local_crops, local_size, local))
    return groups


def swav_crops(image_size: int, local_crops: int, local_size: int,
               global_scale: tuple[float, float] = (0.14, 1.0),
               local_scale: tuple[float, float] = (0.05, 0.14)) -> list[CropGroup]:
    """SwAV's views (the authors' MultiCropDataset): flip, colour distortion of strength 1 (jitter
    0.8/0.8/0.8/0.2 at p 0.8, grayscale 0.2), blur at p 0.5, the same for every crop."""
    distortion = dict(jitter_p=0.8, brightness=0.8, contrast=0.8, saturation=0.8, hue=0.2, grayscale_p=0.2,
                      blur_p=0.5, blur_kernel=3)
    groups = [CropGroup(2, image_size, ViewConfig(crop_scale=global_scale, **distortion))]
    if local_crops:
        groups.append(CropGroup(local_crops, local_size, ViewConfig(crop_scale=local_scale, **distortion)))
    return groups
