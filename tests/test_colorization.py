"""Colorization (Zhang et al., 2016): L -> soft-encoded, rebalanced ab bins; annealed-mean pictures."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import COLOUR_SPEC as SPEC, TINY_OPTIONS, fit_batch, smooth_colour_images
from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import build_method
from selfsup.views.color import gray_to_lightness, rgb_to_lab, soft_encode
from selfsup.views.geometry import fit_to_size

TINY = TINY_OPTIONS["colorization"]


def test_training_counts_the_prior_and_evaluation_does_not():
    torch.manual_seed(0)
    method = build_method("colorization", SPEC, **TINY)
    batch = smooth_colour_images(6)
    method.loss(batch)
    assert method.bin_counts.sum().item() == 6 * 8 * 8  # one hard count per output pixel (1/4 resolution)
    method.eval()
    method.loss(batch)
    assert method.bin_counts.sum().item() == 6 * 8 * 8  # evaluation does not change the prior


def test_needs_colour_data():
    with pytest.raises(SelfSupError, match="colour"):
        build_method("colorization", DataSpec(channels=1, height=28, width=28))


def test_loss_is_the_rebalanced_soft_cross_entropy():
    torch.manual_seed(1)
    method = build_method("colorization", SPEC, **TINY).eval()  # eval: BatchNorm fixed, prior not updated
    counts = torch.rand(len(method.centres), generator=torch.Generator().manual_seed(2)) * 10
    method.bin_counts.copy_(counts)
    batch = smooth_colour_images(3, seed=4)
    loss, _ = method.loss(batch)

    lab = rgb_to_lab(batch.float() / 255)
    targets = soft_encode(lab[:, 1:, ::4, ::4], method.centres)  # (3, Q, 8, 8)
    with torch.no_grad():
        log_probs = F.log_softmax(method.predict(lab[:, :1] / 100), dim=1)
    kernel = torch.exp(-torch.cdist(method.centres, method.centres) ** 2 / (2 * 5.0 ** 2))
    prior = kernel @ (counts / counts.sum())
    prior = prior / prior.sum()
    weights = 1 / (0.5 * prior + 0.5 / len(prior))
    weights = weights / (prior * weights).sum()
    per_pixel = -(targets * log_probs).sum(1) * weights[targets.argmax(1)]
    assert loss.item() == pytest.approx(per_pixel.mean().item(), rel=1e-5)


def test_encoder_sees_lightness_and_gray_images_are_padded_to_the_pretraining_size():
    method = build_method("colorization", SPEC, **TINY)
    colour = smooth_colour_images(2)
    assert torch.allclose(method.encoder_input(colour), rgb_to_lab(colour.float() / 255)[:, :1] / 100)
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = method.encoder_input(gray)
    assert x.shape == (2, 1, 32, 32)
    assert torch.allclose(x[:, :, 2:30, 2:30], gray_to_lightness(gray.float() / 255) / 100)
    assert x[:, :, :2].abs().sum() == 0 and x[:, :, :, 30:].abs().sum() == 0  # black border, L = 0
    assert method.features(gray).shape == (2, method.feature_dim)
    assert torch.equal(fit_to_size(x, 28, 28), x[:, :, 2:30, 2:30])  # larger inputs are centre-cropped


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    spec = DataSpec(channels=3, height=16, width=16)
    method = build_method("colorization", spec, encoder_kwargs={"widths": (16, 16, 16)}, decoder_width=16)
    base = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    batch = (F.interpolate(base, size=(16, 16), mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)
    losses, metrics = fit_batch(method, batch, steps=60, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]
    assert float(metrics["pretext_acc"]) > 0.4


def test_examples_show_gray_input_colorized_and_true_pictures():
    method = build_method("colorization", SPEC, **TINY).eval()
    batch = smooth_colour_images(10)
    shown = method.examples(batch)
    assert set(shown) == {"grayscale", "colorized", "true"}
    for picture in shown.values():
        assert picture.shape == (8, 3, 32, 32) and picture.min() >= 0 and picture.max() <= 1
    gray = shown["grayscale"]
    assert torch.allclose(gray[:, 0], gray[:, 1], atol=1e-5) and torch.allclose(gray[:, 1], gray[:, 2], atol=1e-5)
    assert torch.equal(shown["true"], batch[:8].float() / 255)


def test_sizes_not_divisible_by_the_stride_predict_every_4th_pixel():
    method = build_method("colorization", DataSpec(channels=3, height=30, width=30), **TINY)
    batch = smooth_colour_images(2)[:, :, :30, :30]
    loss, _ = method.loss(batch)
    loss.backward()
    assert method.predict(method.encoder_input(batch)).shape[-2:] == (8, 8)  # pixels 0, 4, ..., 28
    assert method.bin_counts.sum().item() == 2 * 8 * 8
