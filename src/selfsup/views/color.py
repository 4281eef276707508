"""Exact CIE Lab colour and the quantised ab space of colorization (Zhang, Isola & Efros, ECCV 2016).

- `rgb_to_lab` / `lab_to_rgb`: sRGB (IEC 61966-2-1, D65 white) <-> linear RGB <-> XYZ <-> CIE Lab, batched
  over (N, 3, H, W) float tensors; `gray_to_lightness` maps a gray value to the L of that gray sRGB colour.
- `ab_grid`: the centres of the ab bins (grid size 10, as in the paper) whose colour is inside the sRGB gamut
  at some lightness: 313 bins in the paper, computed here from the gamut itself.
- `soft_encode`: soft targets over the 5 nearest bins with a Gaussian of sigma 5.
- `smoothed_prior` / `rebalancing_weights`: the class-rebalancing weights w ∝ ((1-λ)p̃ + λ/Q)^-1 with
  E_p̃[w] = 1, λ = 0.5.
- `annealed_mean`: decoding of a predicted distribution at temperature T (0.38 in the paper).
- `subsample` / `subsampled_size` / `upsample_like`: the 1/4-resolution grid that predictions live on;
  `require_colour`: the check that colour methods run on colour data.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError

# sRGB primaries with the D65 white point (IEC 61966-2-1), linear RGB -> XYZ.
RGB_TO_XYZ = torch.tensor([[0.4124564, 0.3575761, 0.1804375],
                           [0.2126729, 0.7151522, 0.0721750],
                           [0.0193339, 0.1191920, 0.9503041]], dtype=torch.float64)
D65_WHITE = torch.tensor([0.95047, 1.0, 1.08883], dtype=torch.float64)  # XYZ of the reference white
_DELTA = 6.0 / 29.0  # CIE's linear/cube-root switch point of f(t)


def srgb_to_linear(rgb: Tensor) -> Tensor:
    """Undo the sRGB transfer curve: the linear segment near black, the 2.4 power elsewhere."""
    return torch.where(rgb <= 0.04045, rgb / 12.92, ((rgb.clamp(min=0.04045) + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(linear: Tensor) -> Tensor:
    return torch.where(linear <= 0.0031308, linear * 12.92,
                       1.055 * linear.clamp(min=0.0031308) ** (1 / 2.4) - 0.055)


def _lab_f(t: Tensor) -> Tensor:
    return torch.where(t > _DELTA ** 3, t.clamp(min=_DELTA ** 3) ** (1 / 3), t / (3 * _DELTA ** 2) + 4 / 29)


def _lab_f_inverse(t: Tensor) -> Tensor:
    return torch.where(t > _DELTA, t ** 3, 3 * _DELTA ** 2 * (t - 4 / 29))


def _apply_matrix(matrix: Tensor, x: Tensor) -> Tensor:
    """Multiply the channel axis (dim 1) of (N, 3, ...) by a 3x3 matrix."""
    return torch.einsum("ij,nj...->ni...", matrix.to(x), x)


def _channel_view(v: Tensor, like: Tensor) -> Tensor:
    return v.to(like).view(1, 3, *([1] * (like.dim() - 2)))


def rgb_to_lab(rgb: Tensor) -> Tensor:
    """sRGB in [0, 1], (N, 3, ...) -> CIE Lab (L in [0, 100], a and b roughly in [-110, 110])."""
    xyz = _apply_matrix(RGB_TO_XYZ, srgb_to_linear(rgb)) / _channel_view(D65_WHITE, rgb)
    fx, fy, fz = _lab_f(xyz).unbind(1)
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=1)


def lab_to_linear_rgb(lab: Tensor) -> Tensor:
    """CIE Lab -> linear RGB, unclipped: values outside [0, 1] mean the colour is out of the sRGB gamut."""
    L, a, b = lab.unbind(1)
    fy = (L + 16) / 116
    f = torch.stack([fy + a / 500, fy, fy - b / 200], dim=1)
    xyz = _lab_f_inverse(f) * _channel_view(D65_WHITE, lab)
    return _apply_matrix(torch.linalg.inv(RGB_TO_XYZ), xyz)


def lab_to_rgb(lab: Tensor) -> Tensor:
    """CIE Lab -> sRGB in [0, 1] (out-of-gamut colours clipped)."""
    return linear_to_srgb(lab_to_linear_rgb(lab).clamp(0, 1))


def gray_to_lightness(gray: Tensor) -> Tensor:
    """Gray values in [0, 1] -> the L (0..100) of the sRGB colour (g, g, g): its Y is linear(g) times the
    sum of the Y row of RGB_TO_XYZ (1 up to the constants' rounding), so L depends on g alone."""
    y = srgb_to_linear(gray) * RGB_TO_XYZ[1].sum().item() / D65_WHITE[1].item()
    return 116 * _lab_f(y) - 16


def lightness(images: Tensor) -> Tensor:
    """L channel (N, 1, H, W) in [0, 100] of float images in [0, 1], colour (3 channels) or gray (1 channel)."""
    if images.shape[1] == 1:
        return gray_to_lightness(images)
    return rgb_to_lab(images)[:, :1]


# --- quantised ab space --------------------------------------------------------------------------------
def in_gamut(lab: Tensor, tolerance: float = 1e-6) -> Tensor:
    """Whether each Lab colour (N, 3) is an sRGB colour (all linear RGB components in [0, 1])."""
    linear = lab_to_linear_rgb(lab.double())
    return ((linear >= -tolerance) & (linear <= 1 + tolerance)).all(dim=1)


def ab_grid(grid_size: float = 10.0, ab_max: float = 110.0, lightness_steps: int = 101) -> Tensor:
    """Centres (Q, 2) of the ab bins whose centre colour is in the sRGB gamut at one of `lightness_steps`
    evenly spaced L values in [0, 100]. Grid size 10 over [-110, 110] gives the paper's ~313 bins."""
    axis = torch.arange(-ab_max, ab_max + grid_size / 2, grid_size, dtype=torch.float64)
    a, b = torch.meshgrid(axis, axis, indexing="ij")
    ab = torch.stack([a.flatten(), b.flatten()], dim=1)  # (G, 2), a-major order
    levels = torch.linspace(0, 100, lightness_steps, dtype=torch.float64)
    lab = torch.cat([levels.repeat_interleave(len(ab))[:, None], ab.repeat(lightness_steps, 1)], dim=1)
    inside = in_gamut(lab).view(lightness_steps, len(ab)).any(dim=0)
    return ab[inside].float()


def soft_encode(ab: Tensor, centres: Tensor, neighbours: int = 5, sigma: float = 5.0) -> Tensor:
    """ab values (N, 2, H, W) -> soft targets (N, Q, H, W): Gaussian weights on the `neighbours` nearest
    bin centres, normalised to sum to 1 (the paper's soft encoding, which keeps nearby bins from competing)."""
    return encode_ab(ab, centres, neighbours, sigma)[0]


def encode_ab(ab: Tensor, centres: Tensor, neighbours: int = 5, sigma: float = 5.0) -> tuple[Tensor, Tensor]:
    """`soft_encode`'s targets (N, Q, H, W) and each pixel's nearest bin (N, H, W), found in the same search
    (an argmax over the soft targets' bin axis would cost as much again)."""
    n, _, h, w = ab.shape
    points = ab.permute(0, 2, 3, 1).reshape(-1, 2)
    distance_sq = torch.cdist(points, centres.to(points)).square()  # (M, Q)
    nearest_sq, nearest = distance_sq.topk(neighbours, dim=1, largest=False)  # sorted: column 0 is the nearest
    weights = torch.softmax(-nearest_sq / (2 * sigma ** 2), dim=1)  # exp(-d^2 / 2 sigma^2), normalised
    targets = torch.zeros_like(distance_sq).scatter_(1, nearest, weights)
    return targets.view(n, h, w, -1).permute(0, 3, 1, 2), nearest[:, 0].view(n, h, w)


def gaussian_kernel(centres: Tensor, sigma: float = 5.0) -> Tensor:
    """(Q, Q) Gaussian weights exp(-|c_i - c_j|^2 / 2 sigma^2) between bin centres."""
    return torch.exp(-torch.cdist(centres, centres).square() / (2 * sigma ** 2))


def smoothed_prior(counts: Tensor, kernel: Tensor) -> Tensor:
    """Empirical bin distribution from `counts` (Q,), smoothed in ab space with `kernel` (`gaussian_kernel`,
    sigma 5 in the paper, which smooths its ImageNet prior the same way), summing to 1. Uniform before any
    count, so the first step's weights are all 1."""
    if counts.sum() <= 0:
        return torch.full_like(counts, 1.0 / len(counts))
    smoothed = kernel.to(counts) @ (counts / counts.sum())
    return smoothed / smoothed.sum()


def rebalancing_weights(prior: Tensor, mix: float = 0.5) -> Tensor:
    """Per-bin loss weights w ∝ ((1 - λ) p̃ + λ / Q)^-1, scaled so that E_p̃[w] = Σ_q p̃_q w_q = 1."""
    weights = 1.0 / ((1 - mix) * prior + mix / len(prior))
    return weights / (prior * weights).sum()


def annealed_mean(logits: Tensor, centres: Tensor, temperature: float = 0.38, dim: int = 1) -> Tensor:
    """Decode predicted bin distributions to values: E[f_T(z)] with f_T(z) ∝ exp(log z / T).

    `logits` are log-probabilities up to a constant along `dim` (softmax(logits / T) equals the paper's
    re-normalised exp(log z / T)); `centres` (Q, D) are the bin values. T = 1 gives the mean, T -> 0 the mode.
    Returns the values with `dim` replaced by D.
    """
    probs = torch.softmax(logits.movedim(dim, -1) / temperature, dim=-1)
    return (probs @ centres.to(probs)).movedim(-1, dim)


def subsample(x: Tensor, stride: int) -> Tensor:
    """Every `stride`-th pixel, as the paper's stride-4 1x1 sampling of the ab targets (keeps real colours,
    where average pooling would mix and desaturate them)."""
    return x[..., ::stride, ::stride]


def subsampled_size(height: int, width: int, stride: int) -> tuple[int, int]:
    """The size of `subsample(x, stride)` for (height, width) images: ceil(H / stride) by ceil(W / stride)."""
    return (-(-height // stride), -(-width // stride))


def upsample_like(x: Tensor, size: tuple[int, int]) -> Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def require_colour(channels: int, method: str) -> None:
    """Refuse data of other than 3 channels for a method that learns from colour."""
    if channels != 3:
        raise SelfSupError(f"{method} learns from colour images, but the data has {channels} channel(s); "
                           f"pretrain on 'photos' or a folder of colour images (read in colour when any image is colour, "
                           f"or with --channels 3)")
