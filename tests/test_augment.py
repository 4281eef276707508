"""Batched random views: shapes, ranges, exact transforms, per-sample randomness, seeded determinism."""
import pytest
import torch

from selfsup.errors import SelfSupError
from selfsup.views.augment import (ViewConfig, adjust_brightness, adjust_contrast, adjust_hue, adjust_saturation,
                                   augment, byol_views, crop_boxes, gaussian_blur, gaussian_kernels, mocov2_views,
                                   random_grayscale, random_solarize, resized_crop_and_flip, simclr_views, two_views,
                                   view_preset)


def _images(n: int = 16, c: int = 1, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, 28, 28), dtype=torch.uint8, generator=g)


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("preset", [simclr_views(), mocov2_views(), *byol_views()])
def test_views_keep_shape_and_stay_in_unit_range(channels: int, preset: ViewConfig) -> None:
    x = _images(8, channels)
    v = augment(x, preset)
    assert v.shape == x.shape and v.dtype == torch.float32
    assert v.min() >= 0 and v.max() <= 1


def test_each_sample_gets_its_own_random_parameters() -> None:
    one = _images(1)
    batch = one.expand(32, -1, -1, -1)  # the same image 32 times
    v = augment(batch, mocov2_views()).flatten(1)
    distinct = (v[:, None] - v[None]).abs().amax(-1) > 1e-4
    assert distinct.sum() == 32 * 31  # every pair of different views differs


def test_views_are_reproducible_under_manual_seed() -> None:
    x = _images(8, 3)
    torch.manual_seed(7)
    a1, b1 = two_views(x, mocov2_views())
    torch.manual_seed(7)
    a2, b2 = two_views(x, mocov2_views())
    torch.manual_seed(8)
    a3, _ = two_views(x, mocov2_views())
    assert torch.equal(a1, a2) and torch.equal(b1, b2)
    assert not torch.equal(a1, b1) and not torch.equal(a1, a3)


def test_an_explicit_generator_gives_the_same_views() -> None:
    x = _images(4)
    a = augment(x, simclr_views(), torch.Generator().manual_seed(3))
    b = augment(x, simclr_views(), torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


def test_crop_boxes_lie_inside_the_image_with_area_in_the_scale_range() -> None:
    torch.manual_seed(0)
    boxes = crop_boxes(2000, (0.2, 1.0), (3 / 4, 4 / 3), torch.zeros(1))
    cx, cy, w, h = boxes.unbind(1)
    eps = 1e-6
    assert (cx - w / 2 >= -eps).all() and (cx + w / 2 <= 1 + eps).all()
    assert (cy - h / 2 >= -eps).all() and (cy + h / 2 <= 1 + eps).all()
    area = w * h
    assert (area >= 0.2 - eps).all() and (area <= 1 + eps).all()
    ratio = w / h
    assert (ratio >= 3 / 4 - eps).all() and (ratio <= 4 / 3 + eps).all() | (area == 1).all()


def test_whole_image_box_is_the_identity_and_flip_mirrors_exactly() -> None:
    x = torch.rand(3, 2, 28, 28)
    whole = torch.tensor([[0.5, 0.5, 1.0, 1.0]]).expand(3, 4)
    same = resized_crop_and_flip(x, whole, torch.tensor([False, False, False]))
    mirrored = resized_crop_and_flip(x, whole, torch.tensor([True, False, True]))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored[0], x[0].flip(-1), atol=1e-5, rtol=0)
    torch.testing.assert_close(mirrored[1], x[1], atol=1e-5, rtol=0)


def test_crop_of_the_dark_half_is_dark() -> None:
    x = torch.zeros(1, 1, 28, 28)
    x[..., 14:] = 1.0  # right half bright
    left_quarter = torch.tensor([[0.25, 0.5, 0.5, 1.0]])  # box over columns 0..13
    out = resized_crop_and_flip(x, left_quarter, torch.tensor([False]))
    assert out[..., :26].max() == 0  # only the last resampled columns touch the bright boundary


def test_brightness_and_contrast_match_their_definitions() -> None:
    x = torch.rand(4, 3, 8, 8) * 0.5 + 0.25
    f = torch.tensor([0.5, 1.0, 1.2, 0.9])
    torch.testing.assert_close(adjust_brightness(x, f), (x * f.view(-1, 1, 1, 1)).clamp(0, 1))
    gray = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    mean = gray.mean(dim=(1, 2)).view(-1, 1, 1, 1)
    torch.testing.assert_close(adjust_contrast(x, f), (mean + f.view(-1, 1, 1, 1) * (x - mean)).clamp(0, 1))


def test_saturation_hue_and_grayscale_are_no_ops_on_one_channel() -> None:
    x = torch.rand(4, 1, 8, 8)
    f = torch.tensor([0.0, 0.5, 1.5, 2.0])
    assert torch.equal(adjust_saturation(x, f), x)
    assert torch.equal(adjust_hue(x, f), x)
    assert torch.equal(random_grayscale(x, 1.0), x)


def test_grayscale_on_rgb_makes_equal_channels_when_applied() -> None:
    x = torch.rand(6, 3, 8, 8)
    g = random_grayscale(x, 1.0)
    assert torch.equal(g[:, 0], g[:, 1]) and torch.equal(g[:, 1], g[:, 2])
    torch.testing.assert_close(g[:, 0], 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2])
    assert torch.equal(random_grayscale(x, 0.0), x)


def test_gaussian_blur_of_a_point_is_the_outer_product_of_the_kernel() -> None:
    x = torch.zeros(2, 1, 9, 9)
    x[:, :, 4, 4] = 1.0
    sigma = torch.tensor([0.5, 1.5])
    out = gaussian_blur(x, sigma, 3)
    k = gaussian_kernels(sigma, 3)
    torch.testing.assert_close(k.sum(1), torch.ones(2))
    for i in range(2):
        expected = torch.outer(k[i], k[i])
        torch.testing.assert_close(out[i, 0, 3:6, 3:6], expected)
    assert out[:, :, :3].abs().max() == 0  # nothing spreads beyond the 3x3 kernel
    assert out[1, 0, 4, 4] < out[0, 0, 4, 4]  # larger sigma, flatter kernel


def test_solarize_inverts_bright_pixels_only() -> None:
    x = torch.tensor([0.1, 0.49, 0.5, 0.9]).view(1, 1, 1, 4)
    torch.testing.assert_close(random_solarize(x, 1.0), torch.tensor([0.1, 0.49, 0.5, 0.1]).view(1, 1, 1, 4))
    assert torch.equal(random_solarize(x, 0.0), x)


def test_views_follow_the_batch_device_and_dtype() -> None:
    x = _images(4).float() / 255
    v = augment(x, mocov2_views())
    assert v.device == x.device and v.dtype == x.dtype
    assert not torch.equal(v, x)


def test_presets_by_name_and_unknown_name() -> None:
    assert view_preset("mocov2") == mocov2_views()
    assert simclr_views(crop_scale=(0.5, 1.0)).crop_scale == (0.5, 1.0)
    first, second = byol_views()
    assert first.blur_p == 1.0 and second.blur_p == 0.1 and second.solarize_p == 0.2
    with pytest.raises(SelfSupError, match="mocov2"):
        view_preset("mocov3")
