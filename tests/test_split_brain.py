"""Split-brain autoencoder (Zhang et al., 2017): L -> ab and ab -> L halves, concatenated representation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import COLOUR_SPEC as SPEC, TINY_OPTIONS, fit_batch, smooth_colour_images
from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import build_method
from selfsup.methods.split_brain import lightness_targets
from selfsup.nets import freeze_upto
from selfsup.views.color import gray_to_lightness, rgb_to_lab, soft_encode

TINY = TINY_OPTIONS["split-brain"]


def test_loss_is_the_sum_of_both_halves_losses():
    torch.manual_seed(0)
    method = build_method("split-brain", SPEC, **TINY)
    loss, metrics = method.loss(smooth_colour_images(4))
    assert set(metrics) == {"ab_loss", "l_loss", "ab_acc", "l_acc"}
    assert loss.item() == pytest.approx(float(metrics["ab_loss"] + metrics["l_loss"]), rel=1e-6)


def test_needs_colour_data():
    with pytest.raises(SelfSupError, match="colour"):
        build_method("split-brain", DataSpec(channels=1, height=28, width=28))


def test_each_prediction_reaches_only_its_own_half():
    method = build_method("split-brain", SPEC, **TINY)
    x = method.encoder_input(smooth_colour_images(2))
    l_half, ab_half = method.encoder.halves
    ab_logits, _ = method.predict(x)
    ab_logits.sum().backward()  # L -> ab: only the L half may receive gradient
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in l_half.parameters())
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in ab_half.parameters())
    method.zero_grad(set_to_none=True)
    _, l_logits = method.predict(x)
    l_logits.sum().backward()  # ab -> L: only the ab half
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in l_half.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in ab_half.parameters())


@pytest.mark.parametrize("upto", [None, "conv1", "conv2"])
def test_representation_is_the_concatenation_of_both_halves(upto):
    method = build_method("split-brain", SPEC, **TINY).eval()
    x = method.encoder_input(smooth_colour_images(3))
    l_half, ab_half = method.encoder.halves
    with torch.no_grad():
        whole = method.encoder(x, upto=upto)
        expected = torch.cat([l_half(x[:, :1], upto=upto), ab_half(x[:, 1:], upto=upto)], dim=1)
    assert torch.equal(whole, expected)
    assert whole.shape[1] == method.encoder.feature_dim(upto) == l_half.feature_dim(upto) + ab_half.feature_dim(upto)


def test_freezing_a_block_freezes_it_in_both_halves():
    method = build_method("split-brain", SPEC, **TINY)
    assert freeze_upto(method.encoder, "conv1") == ["conv1"]
    l_half, ab_half = method.encoder.halves
    for half in (l_half, ab_half):
        assert not any(p.requires_grad for p in half.blocks["conv1"].parameters())
        assert all(p.requires_grad for p in half.blocks["conv2"].parameters())


def test_input_is_scaled_lab_and_gray_images_get_neutral_ab():
    method = build_method("split-brain", SPEC, **TINY)
    colour = smooth_colour_images(2)
    lab = rgb_to_lab(colour.float() / 255)
    expected = torch.cat([lab[:, :1] / 100, lab[:, 1:] / 110], dim=1)
    assert torch.allclose(method.encoder_input(colour), expected)
    gray = torch.randint(0, 256, (2, 1, 28, 28), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    x = method.encoder_input(gray)
    assert x.shape == (2, 3, 32, 32)
    assert x[:, 1:].abs().sum() == 0  # ab = 0 for the ab -> L half
    assert torch.allclose(x[:, :1, 2:30, 2:30], gray_to_lightness(gray.float() / 255) / 100)
    assert method.features(gray).shape == (2, method.feature_dim)


def test_lightness_bins_are_one_unit_wide():
    lightness = torch.tensor([0.0, 0.99, 1.0, 50.5, 99.99, 100.0])
    assert lightness_targets(lightness, 100).tolist() == [0, 0, 1, 50, 99, 99]
    assert lightness_targets(lightness, 50).tolist() == [0, 0, 0, 25, 49, 49]


def test_loss_is_soft_ab_cross_entropy_plus_l_cross_entropy():
    torch.manual_seed(2)
    method = build_method("split-brain", SPEC, **TINY).eval()
    batch = smooth_colour_images(3, seed=1)
    loss, _ = method.loss(batch)
    lab = rgb_to_lab(batch.float() / 255)
    with torch.no_grad():
        ab_logits, l_logits = method.predict(method.encoder_input(batch))
    ab_targets = soft_encode(lab[:, 1:, ::4, ::4], method.centres)
    ab_loss = -(ab_targets * F.log_softmax(ab_logits, 1)).sum(1).mean()
    l_bins = lab[:, 0, ::4, ::4].floor().long().clamp(0, 99)
    l_loss = F.cross_entropy(l_logits, l_bins)
    assert loss.item() == pytest.approx((ab_loss + l_loss).item(), rel=1e-5)


def test_overfits_a_tiny_batch():
    torch.manual_seed(0)
    spec = DataSpec(channels=3, height=16, width=16)
    method = build_method("split-brain", spec, encoder_kwargs={"widths": (16, 16, 16)}, decoder_width=16)
    base = torch.rand(4, 3, 4, 4, generator=torch.Generator().manual_seed(0))
    batch = (F.interpolate(base, size=(16, 16), mode="bilinear", align_corners=False) * 255).round().to(torch.uint8)
    losses, metrics = fit_batch(method, batch, steps=60, lr=1e-2)
    assert losses[-1] < 0.5 * losses[0]
    assert float(metrics["l_acc"]) > 0.4 and float(metrics["ab_acc"]) > 0.4


def test_examples_show_input_halves_cross_predictions_and_truth():
    method = build_method("split-brain", SPEC, **TINY).eval()
    batch = smooth_colour_images(10)
    shown = method.examples(batch)
    assert list(shown) == ["input_L", "input_ab", "predicted_ab", "predicted_L", "true"]
    for picture in shown.values():
        assert picture.shape == (8, 3, 32, 32) and picture.min() >= 0 and picture.max() <= 1
    assert torch.allclose(shown["true"], batch[:8].float() / 255, atol=1e-4)
    gray = shown["input_L"]
    assert torch.allclose(gray[:, 0], gray[:, 2], atol=1e-5)


def test_a_deep_copy_keeps_the_halves_tied_to_its_own_blocks():
    import copy
    method = build_method("split-brain", SPEC, **TINY).eval()
    clone = copy.deepcopy(method.encoder)  # what fine-tuning does
    l_half, ab_half = clone.halves
    assert l_half.blocks["conv1"] is clone.blocks["conv1"].first
    assert ab_half.blocks["conv3"] is clone.blocks["conv3"].second
    assert l_half.blocks["conv1"] is not method.encoder.blocks["conv1"].first
    x = method.encoder_input(smooth_colour_images(2))
    with torch.no_grad():
        assert torch.equal(clone(x), method.encoder(x))
    assert len(method.encoder.state_dict()) == len(l_half.state_dict()) + len(ab_half.state_dict())
