"""Multi-crop views (selfsup.views.multicrop): counts, sizes, value ranges, and local crops from smaller regions."""
from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from conftest import noise_images
from selfsup.errors import SelfSupError
from selfsup.views.augment import ViewConfig
from selfsup.views.multicrop import CropGroup, dino_crops, local_crop_size, multi_crop, swav_crops


def test_local_crops_are_the_papers_fraction_of_the_side() -> None:
    assert local_crop_size(224) == 96 and local_crop_size(28) == 12 and local_crop_size(32) == 14


@pytest.mark.parametrize("preset", [dino_crops, swav_crops])
def test_two_global_then_local_crops_of_every_image_in_range(preset) -> None:
    images = noise_images(5)
    crops = multi_crop(images, preset(28, 3, 12), torch.Generator().manual_seed(0))
    assert [tuple(c.shape) for c in crops] == [(5, 1, 28, 28)] * 2 + [(5, 1, 12, 12)] * 3
    for crop in crops:
        assert crop.dtype == torch.float32 and 0 <= crop.min() and crop.max() <= 1
    assert not torch.allclose(crops[2], crops[3])  # copies of an image get their own random crops
    assert len(multi_crop(images, preset(28, 0, 12))) == 2  # no local crops asked: the global ones only


def test_dino_views_differ_between_the_global_crops_as_in_the_paper() -> None:
    first, second, local = (g.view for g in dino_crops(28, 2, 12))
    assert (first.blur_p, first.solarize_p) == (1.0, 0.0) and (second.blur_p, second.solarize_p) == (0.1, 0.2)
    assert local.blur_p == 0.5 and first.crop_scale == (0.4, 1.0) and local.crop_scale == (0.05, 0.4)


def test_the_same_generator_seed_gives_the_same_crops() -> None:
    groups = swav_crops(28, 2, 12)
    a = multi_crop(noise_images(4), groups, torch.Generator().manual_seed(3))
    b = multi_crop(noise_images(4), groups, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def coordinate_images(n: int, size: int = 28) -> torch.Tensor:
    """Channel 0 holds each pixel's column / (size - 1), channel 1 its row: a crop's value range tells which
    part of the image it covers."""
    ramp = torch.arange(size, dtype=torch.float32) / (size - 1)
    xy = torch.stack([ramp.expand(size, size), ramp[:, None].expand(size, size), torch.zeros(size, size)])
    return xy.expand(n, 3, size, size).clone()


def test_local_crops_come_from_smaller_regions_than_global_crops() -> None:
    """With photometric changes off, the span of the column (row) channel in a crop is the crop box's width
    (height) as a fraction of the image: their product is the box's area, which lies in the group's scale."""
    geometry_only = dict(jitter_p=0.0, grayscale_p=0.0, blur_p=0.0, solarize_p=0.0)
    groups = [replace(g, view=replace(g.view, **geometry_only)) for g in dino_crops(28, 4, 12)]
    crops = multi_crop(coordinate_images(200), groups, torch.Generator().manual_seed(0))

    def areas(crop: torch.Tensor) -> torch.Tensor:
        span = crop.amax(dim=(2, 3)) - crop.amin(dim=(2, 3))  # (N, 3)
        size = crop.shape[-1]
        return span[:, 0] * span[:, 1] / ((size - 1) / size * 28 / 27) ** 2  # pixel centres -> box edges

    global_areas, local_areas = torch.cat([areas(c) for c in crops[:2]]), torch.cat([areas(c) for c in crops[2:]])
    assert global_areas.min() >= 0.4 - 0.01 and global_areas.max() <= 1 + 0.01
    assert local_areas.min() >= 0.05 - 0.01 and local_areas.max() <= 0.4 + 0.01
    assert local_areas.mean() < 0.5 * global_areas.mean()


def test_a_crop_group_needs_a_positive_count_and_size() -> None:
    with pytest.raises(SelfSupError, match="positive count"):
        multi_crop(noise_images(2), [CropGroup(0, 12, ViewConfig())])
