import numpy as np
import pytest
import torch

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, fit_batch
from selfsup.errors import SelfSupError
from selfsup.methods.base import build_method
from selfsup.methods.mae import masked_patch_loss, patch_targets
from selfsup.nets.base import freeze_upto
from selfsup.nets.registry import build_encoder
from selfsup.nets.vit import patchify, unpatchify
from selfsup.views.masks import random_patch_mask

SMALL = TINY_OPTIONS["mae"]
SMALL_VIT = SMALL["encoder_kwargs"]


def test_patch_mask_ratio_is_exact_and_per_sample():
    ids_keep, mask, _ = random_patch_mask(64, 49, 0.75, generator=torch.Generator().manual_seed(0))
    assert ids_keep.shape == (64, 12) and mask.shape == (64, 49)
    assert (mask.sum(1) == 49 - 12).all()  # int(49 * 0.25) = 12 visible, 37 hidden in every sample
    for n in range(64):  # the kept indices are exactly the visible patches
        assert sorted(ids_keep[n].tolist()) == torch.nonzero(~mask[n]).flatten().tolist()
    assert len({tuple(m.tolist()) for m in mask}) > 60  # the masks differ between samples
    _, mask16, _ = random_patch_mask(8, 16, 0.75)
    assert (mask16.sum(1) == 12).all()


def test_unshuffling_restores_patch_order():
    ids_keep, mask, restore = random_patch_mask(5, 16, 0.5, generator=torch.Generator().manual_seed(1))
    shuffle = restore.argsort(1)  # the decoder's layout: kept patches first, then the hidden ones
    assert torch.equal(shuffle[:, :8], ids_keep) and mask.gather(1, shuffle[:, 8:]).all()
    tokens = shuffle.float()  # a token's value is its patch index
    assert torch.equal(tokens.gather(1, restore), torch.arange(16).float().expand(5, 16))
    # the shuffle is the argsort of per-sample uniform noise drawn from the generator
    assert torch.equal(torch.rand(5, 16, generator=torch.Generator().manual_seed(1)).argsort(1)[:, :8], ids_keep)


def test_patchify_layout_and_roundtrip():
    images = torch.rand(2, 3, 8, 8)
    p = patchify(images, 4)
    assert p.shape == (2, 4, 48)
    assert torch.equal(p[:, 1], images[:, :, 0:4, 4:8].permute(0, 2, 3, 1).flatten(1))  # top-right patch
    assert torch.equal(unpatchify(p, 4, 3), images)


def test_masked_loss_ignores_visible_patches_and_matches_plain_mse():
    torch.manual_seed(0)
    prediction, target = torch.randn(3, 49, 16), torch.randn(3, 49, 16)
    _, mask, _ = random_patch_mask(3, 49, 0.75)
    loss = masked_patch_loss(prediction, target, mask)
    reference = np.mean([((prediction[n, l] - target[n, l]) ** 2).mean().item()
                         for n in range(3) for l in range(49) if mask[n, l]])
    assert loss.item() == pytest.approx(reference, rel=1e-6)
    changed = torch.where(mask[..., None], prediction, prediction + 100 * torch.randn_like(prediction))
    assert torch.equal(masked_patch_loss(changed, target, mask), loss)  # visible predictions do not count
    assert masked_patch_loss(torch.where(mask[..., None], prediction + 1, prediction), target, mask) != loss


def test_normalised_targets():
    target = patch_targets(torch.rand(2, 1, 28, 28), 4, normalise=True)
    assert torch.allclose(target.mean(-1), torch.zeros(2, 49), atol=1e-5)
    assert torch.allclose(target.var(-1), torch.ones(2, 49), atol=1e-3)
    assert torch.equal(patch_targets(torch.ones(1, 1, 8, 8), 4, normalise=False), torch.ones(1, 4, 16))


def test_vit_blocks_upto_and_freezing():
    vit = build_encoder("vit_tiny", in_channels=1, image_size=28, **SMALL_VIT)
    assert vit.block_names == ["patch_embed", "block1", "block2", "norm"] and vit.input_shape == (1, 28, 28)
    x = torch.rand(3, 1, 28, 28)
    assert vit(x).shape == (3, 32) == (3, vit.feature_dim()) and vit(x, upto="block1").shape == (3, 32)
    assert not torch.allclose(vit(x, upto="block1"), vit(x, upto="block2"))
    assert freeze_upto(vit, "block1") == ["patch_embed", "block1"]
    frozen = {name for name, p in vit.named_parameters() if not p.requires_grad}
    assert "blocks.patch_embed.cls_token" in frozen and any(n.startswith("blocks.block1.") for n in frozen)
    assert not any(n.startswith(("blocks.block2.", "blocks.norm.")) for n in frozen)
    with pytest.raises(SelfSupError):
        build_encoder("vit_tiny", image_size=28, patch_size=5)


def test_encoder_sees_visible_patches_only_and_gradients_skip_them():
    torch.manual_seed(0)
    method = build_method("mae", SPEC, **SMALL).eval()
    images = torch.rand(4, 1, 28, 28)
    ids_keep, mask, restore = random_patch_mask(4, 49, 0.75)
    # repaint every hidden patch: the encoder output must not change
    hidden_pixels = unpatchify(mask[..., None].float().expand(-1, -1, 16), 4, 1).bool()
    repainted = torch.where(hidden_pixels, torch.rand_like(images), images)
    assert torch.allclose(method.encode_visible(images, ids_keep), method.encode_visible(repainted, ids_keep))
    assert method.encode_visible(images, ids_keep).shape == (4, 1 + 12, 32)
    # and the loss sends no gradient to the predictions of visible patches
    prediction = method.decode(method.encode_visible(images, ids_keep), restore)
    prediction.retain_grad()
    masked_patch_loss(prediction, patch_targets(images, 4, True), mask).backward()
    assert (prediction.grad[~mask] == 0).all() and (prediction.grad[mask] != 0).any()


def test_non_vit_encoder_is_refused():
    with pytest.raises(SelfSupError):
        build_method("mae", SPEC, encoder="convnet")


def test_default_masks_three_quarters_and_examples_keep_the_visible_patches():
    method = build_method("mae", SPEC)  # the default vit_tiny
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    loss, metrics = method.loss(batch)
    assert loss.item() > 0 and float(metrics["mask_ratio"]) == pytest.approx(37 / 49)
    assert method.feature_dim == 64
    ex = method.examples(batch)
    assert ex["masked"].shape == ex["reconstruction"].shape == ex["true"].shape == (4, 1, 28, 28)
    assert torch.equal(ex["hidden_patches"], torch.full((4,), 37))
    visible = ex["masked"] != 0.5
    assert torch.equal(ex["reconstruction"][visible], ex["true"][visible])


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    method = build_method("mae", SPEC, **SMALL)
    yy, xx = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    batch = (((yy // 7 + xx // 7) % 2) * 255).to(torch.uint8).expand(8, 1, 28, 28)  # a checkerboard
    losses, _ = fit_batch(method, batch, steps=60, lr=2e-3)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
