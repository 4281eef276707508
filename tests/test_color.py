"""Exact Lab conversion and the quantised ab space of colorization (selfsup.views.color)."""
from __future__ import annotations

import math

import pytest
import torch

from selfsup.views.color import (ab_grid, annealed_mean, encode_ab, gaussian_kernel, gray_to_lightness, in_gamut,
                                 lab_to_rgb, lightness, rebalancing_weights, rgb_to_lab, smoothed_prior, soft_encode,
                                 subsample)


def pixels(*rgb: tuple[float, float, float]) -> torch.Tensor:
    """Colours as a (N, 3, 1, 1) float64 batch."""
    return torch.tensor(rgb, dtype=torch.float64).view(-1, 3, 1, 1)


# Published reference values for sRGB (D65) primaries (e.g. Lindbloom's and EasyRGB's calculators).
@pytest.mark.parametrize("rgb, lab", [
    ((1.0, 1.0, 1.0), (100.0, 0.0, 0.0)),
    ((0.0, 0.0, 0.0), (0.0, 0.0, 0.0)),
    ((1.0, 0.0, 0.0), (53.24, 80.09, 67.20)),
    ((0.0, 1.0, 0.0), (87.73, -86.18, 83.18)),
    ((0.0, 0.0, 1.0), (32.30, 79.19, -107.86)),
])
def test_lab_of_known_colours(rgb, lab):
    got = rgb_to_lab(pixels(rgb)).flatten()
    assert torch.allclose(got, torch.tensor(lab, dtype=torch.float64), atol=0.01), got


def test_mid_gray_lightness_follows_the_cie_formula():
    g = 0.5
    linear = ((g + 0.055) / 1.055) ** 2.4  # sRGB decoding; Y of a gray equals its linear value
    expected_l = 116 * linear ** (1 / 3) - 16  # Y above (6/29)^3, so the cube-root branch
    lab = rgb_to_lab(pixels((g, g, g))).flatten()
    assert lab[0].item() == pytest.approx(expected_l, abs=1e-5)  # the Y row of the matrix sums to 1.0000001
    assert abs(lab[1].item()) < 1e-4 and abs(lab[2].item()) < 1e-4
    assert gray_to_lightness(torch.tensor([g], dtype=torch.float64)).item() == pytest.approx(lab[0].item(), abs=1e-9)


def test_dark_colours_use_the_linear_branches():
    g = 0.02  # below 0.04045 (sRGB linear segment), and Y below (6/29)^3 (Lab linear segment)
    y = g / 12.92
    expected_l = 116 * (y / (3 * (6 / 29) ** 2) + 4 / 29) - 16  # = 903.3 * Y
    assert gray_to_lightness(torch.tensor([g], dtype=torch.float64)).item() == pytest.approx(expected_l, abs=1e-5)


def test_rgb_lab_round_trip():
    rgb = torch.rand(16, 3, 5, 7, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-9)
    rgb32 = rgb.float()
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb32)), rgb32, atol=1e-4)


def test_gray_input_maps_to_the_lightness_of_the_gray_colour():
    gray = torch.rand(4, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    as_colour = gray.expand(-1, 3, -1, -1)
    assert torch.allclose(lightness(gray), rgb_to_lab(as_colour)[:, :1], atol=1e-3)
    assert lightness(gray).shape == (4, 1, 6, 6)


def test_ab_grid_holds_exactly_the_bins_whose_centre_is_in_gamut_at_some_lightness():
    centres = ab_grid(10.0)
    levels = torch.linspace(0, 100, 101, dtype=torch.float64)

    def reachable(a: float, b: float) -> bool:
        # In gamut means: the colour survives Lab -> clipped sRGB -> Lab unchanged (clipping moves it otherwise).
        lab = torch.stack([levels, torch.full_like(levels, a), torch.full_like(levels, b)], 1).view(-1, 3, 1, 1)
        back = rgb_to_lab(lab_to_rgb(lab))
        return bool(((back - lab).abs().amax(dim=(1, 2, 3)) < 1e-6).any())

    kept = {(round(a), round(b)) for a, b in centres.tolist()}
    assert (0, 0) in kept
    for a in range(-110, 111, 10):
        for b in range(-110, 111, 10):
            assert ((a, b) in kept) == reachable(a, b), (a, b)
    assert all(a % 10 == 0 and b % 10 == 0 for a, b in kept)


def test_in_gamut_flags_out_of_gamut_colours():
    lab = torch.tensor([[50.0, 0.0, 0.0], [50.0, 100.0, 100.0], [100.0, 0.0, 0.0], [0.0, 50.0, 0.0]])
    assert in_gamut(lab).tolist() == [True, False, True, False]


def test_soft_encoding_sums_to_one_on_five_bins_and_favours_the_true_bin():
    centres = ab_grid()
    ab = torch.tensor([[0.0, 0.0], [3.0, -4.0], [-41.0, 27.0], [12.0, 58.0]]).T.reshape(1, 2, 2, 2)
    targets = soft_encode(ab, centres)  # (1, Q, 2, 2)
    assert targets.shape == (1, len(centres), 2, 2)
    assert torch.allclose(targets.sum(1), torch.ones(1, 2, 2))
    assert ((targets > 0).sum(1) == 5).all()
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    nearest = torch.cdist(points, centres).argmin(1).view(1, 2, 2)
    assert torch.equal(targets.argmax(1), nearest)
    assert targets[0, :, 0, 0].max() > 0.5  # exactly on a centre: 1 / (1 + 4 e^-2) of the weight


def test_soft_encoding_weights_are_the_normalised_gaussian_of_the_distances():
    centres = ab_grid()
    point = torch.tensor([-41.0, 27.0])
    targets = soft_encode(point.view(1, 2, 1, 1), centres).flatten()
    distances = ((centres - point) ** 2).sum(1)
    five = distances.argsort()[:5]
    gauss = torch.exp(-distances[five] / (2 * 5.0 ** 2))
    assert torch.allclose(targets[five], gauss / gauss.sum(), atol=1e-6)
    assert targets.sum().item() == pytest.approx(1.0, abs=1e-6)


def test_rebalancing_weights_follow_their_formula_and_have_unit_expectation():
    prior = torch.tensor([0.7, 0.2, 0.05, 0.05, 0.0], dtype=torch.float64)
    lam, q = 0.5, 5
    w = rebalancing_weights(prior, lam)
    product = w * ((1 - lam) * prior + lam / q)  # w ∝ 1 / ((1-λ)p + λ/Q): this product is one constant
    assert torch.allclose(product, product[0].expand(q))
    assert (prior * w).sum().item() == pytest.approx(1.0, abs=1e-12)
    assert w[4] > w[2] > w[1] > w[0]  # rarer colours weigh more
    assert torch.allclose(rebalancing_weights(prior, 1.0), torch.ones(q, dtype=torch.float64))


def test_smoothed_prior_normalises_smooths_and_starts_uniform():
    centres = ab_grid()
    kernel = gaussian_kernel(centres, 5.0)
    counts = torch.zeros(len(centres))
    assert torch.allclose(smoothed_prior(counts, kernel), torch.full((len(centres),), 1 / len(centres)))
    counts[10] = 30.0
    counts[20] = 10.0
    p = smoothed_prior(counts, kernel)
    assert p.sum().item() == pytest.approx(1.0, abs=1e-6)
    assert torch.allclose(smoothed_prior(counts, torch.eye(len(centres))), counts / 40)
    expected = kernel @ (counts / 40)
    assert torch.allclose(p, expected / expected.sum())


def test_annealed_mean_is_the_expectation_at_t1_and_the_mode_as_t_goes_to_0():
    centres = torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 20.0], [-30.0, -10.0]])
    probs = torch.tensor([0.1, 0.4, 0.3, 0.2])
    logits = probs.log().view(1, 4, 1, 1)
    expectation = (probs[:, None] * centres).sum(0)
    assert torch.allclose(annealed_mean(logits, centres, 1.0).flatten(), expectation, atol=1e-5)
    assert torch.allclose(annealed_mean(logits, centres, 0.01).flatten(), centres[1], atol=1e-3)
    sharpened = probs ** (1 / 0.38) / (probs ** (1 / 0.38)).sum()  # the paper's f_T(z) at T = 0.38
    assert torch.allclose(annealed_mean(logits, centres, 0.38).flatten(), (sharpened[:, None] * centres).sum(0),
                          atol=1e-5)
    shifted = logits + 7.0  # unnormalised logits decode the same
    assert torch.allclose(annealed_mean(shifted, centres, 0.38), annealed_mean(logits, centres, 0.38), atol=1e-5)


def test_subsample_takes_every_stride_th_pixel():
    x = torch.arange(64.0).view(1, 1, 8, 8)
    assert subsample(x, 4).flatten().tolist() == [0.0, 4.0, 32.0, 36.0]
    assert math.isclose(float(subsample(x, 1).sum()), float(x.sum()))


def test_encode_ab_returns_the_soft_targets_and_the_nearest_bin():
    centres = ab_grid()
    ab = torch.randn(2, 2, 3, 3, generator=torch.Generator().manual_seed(5)) * 40
    targets, nearest = encode_ab(ab, centres)
    assert torch.equal(targets, soft_encode(ab, centres))
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    assert torch.equal(nearest.flatten(), torch.cdist(points, centres).argmin(1))
