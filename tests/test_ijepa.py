"""I-JEPA: multi-block masks (the context excludes the targets; target blocks of the requested scale and aspect,
exact counts on the 7x7 patch grid), the loss against a plain computation, the target side without gradient,
a prediction blind to the target patches, and the EMA update."""
from __future__ import annotations

from copy import deepcopy

import pytest
import torch

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.errors import SelfSupError
from selfsup.losses.latent_prediction import latent_prediction_loss
from selfsup.methods.base import build_method
from selfsup.views.masks import block_shape, multiblock_masks

GRID = 7  # vit_tiny's patch 4 on 28x28


def tiny_ijepa(**options):
    torch.manual_seed(0)
    return build_method("ijepa", SPEC, **deepcopy(TINY_OPTIONS["ijepa"]), **options)


def as_grid(ids: torch.Tensor) -> torch.Tensor:
    """Patch indices (K,) -> bool (GRID, GRID)."""
    return torch.zeros(GRID * GRID, dtype=torch.bool).index_fill_(0, ids, True).view(GRID, GRID)


def bounding_box(block: torch.Tensor) -> tuple[int, int]:
    rows, cols = block.nonzero(as_tuple=True)
    return int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)


@pytest.mark.parametrize("scale, aspect, shape", [
    (0.2, 1.0, (3, 3)),  # keep int(9.8) = 9
    (0.15, 1.5, (3, 2)),  # keep 7: round(sqrt(10.5)) = 3, round(sqrt(4.67)) = 2
    (0.2, 1.5, (4, 2)),  # keep 9: round(3.67) = 4, round(2.45) = 2
    (0.15, 0.75, (2, 3)),  # keep 7: round(2.29) = 2, round(3.06) = 3
    (1.0, 1.0, (7, 7)),
    (0.85, 1.0, (6, 6)),  # keep 41: round(6.4) = 6
])
def test_block_shape_follows_the_reference_rounding(scale: float, aspect: float, shape: tuple[int, int]) -> None:
    assert block_shape(GRID, scale, aspect) == shape


def test_fixed_ranges_give_exact_blocks_and_the_context_is_the_rest_of_the_grid() -> None:
    masks = multiblock_masks(16, GRID, targets=4, target_scale=(0.2, 0.2), target_aspect=(1.5, 1.5),
                             context_scale=(1.0, 1.0), generator=torch.Generator().manual_seed(0))
    assert masks.targets.shape == (16, 4, 8)  # 4 blocks of 4 rows x 2 columns
    rest = []
    for sample_targets, context in zip(masks.targets, masks.context):
        blocks = [as_grid(ids) for ids in sample_targets]
        assert all(int(b.sum()) == 8 and bounding_box(b) == (4, 2) for b in blocks)
        union = torch.stack(blocks).any(0)
        assert not (as_grid(context) & union).any()  # the context never holds a target patch
        assert len(context.unique()) == len(context)
        rest.append(int((~union).sum()))
    assert masks.context.shape[1] == min(rest)  # the 7x7 context block minus the targets, cut to the batch's smallest


def test_default_masks_have_the_papers_scales_and_aspects_and_disjoint_context() -> None:
    g = torch.Generator().manual_seed(1)
    reachable = {block_shape(GRID, s, a) for s in torch.linspace(0.15, 0.2, 51).tolist()
                 for a in torch.linspace(0.75, 1.5, 51).tolist()}
    # 15-20% of 49 patches is 7 to 9; rounding height and width (as the reference does) gives 6 to 12.
    assert reachable == {(2, 3), (3, 2), (3, 3), (4, 2), (4, 3)}
    seen = set()
    for _ in range(40):  # one block shape per batch
        masks = multiblock_masks(8, GRID, min_context=4, generator=g)
        for sample_targets, context in zip(masks.targets, masks.context):
            union = torch.zeros(GRID, GRID, dtype=torch.bool)
            for ids in sample_targets:
                block = as_grid(ids)
                h, w = bounding_box(block)
                assert (h, w) in reachable and int(block.sum()) == h * w  # a whole rectangle
                seen.add((h, w))
                union |= block
            assert not (as_grid(context) & union).any()
        assert masks.context.shape[1] >= 4
    assert len(seen) >= 3  # shapes are drawn, not fixed


def test_masks_that_cannot_leave_a_context_raise() -> None:
    with pytest.raises(SelfSupError, match="min_context"):
        multiblock_masks(4, GRID, targets=4, target_scale=(0.9, 0.9), target_aspect=(1.0, 1.0), min_context=4,
                         generator=torch.Generator().manual_seed(0), tries=3)


def reference_smooth_l1(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    mean, var = target.mean(-1, keepdim=True), target.var(-1, unbiased=False, keepdim=True)
    d = (prediction - (target - mean) / torch.sqrt(var + 1e-5)).abs()
    return torch.where(d < 1, 0.5 * d ** 2, d - 0.5).mean()


def test_loss_is_smooth_l1_to_the_layer_normed_target() -> None:
    g = torch.Generator().manual_seed(0)
    prediction, target = torch.randn(2, 3, 4, 8, generator=g) * 2, torch.randn(2, 3, 4, 8, generator=g) * 3 + 1
    torch.testing.assert_close(latent_prediction_loss(prediction, target), reference_smooth_l1(prediction, target))
    normed = (target - target.mean(-1, keepdim=True)) / torch.sqrt(target.var(-1, unbiased=False, keepdim=True) + 1e-5)
    torch.testing.assert_close(latent_prediction_loss(prediction, target, "mse"), ((prediction - normed) ** 2).mean())
    with pytest.raises(SelfSupError, match="distance"):
        latent_prediction_loss(prediction, target, "l3")


def test_loss_is_the_distance_of_predictions_to_the_target_encoders_patches() -> None:
    method = tiny_ijepa()
    images = torch.rand(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    masks = method.sample_masks(4, images.device)
    prediction, target = method.predict(images, masks)
    with torch.no_grad():  # the target encoder's tokens of the whole image, picked one patch at a time
        tokens = method.target_encoder.encode_tokens(method.target_encoder.blocks["patch_embed"](images))[:, 1:]
    for i in range(4):
        for b in range(masks.targets.shape[1]):
            torch.testing.assert_close(target[i, b], tokens[i, masks.targets[i, b]])
    assert prediction.shape == target.shape == (4, 4, masks.targets.shape[2], method.encoder.dim)
    torch.testing.assert_close(latent_prediction_loss(prediction, target), reference_smooth_l1(prediction, target))


def test_gradient_reaches_encoder_and_predictor_but_not_the_target_encoder() -> None:
    method = tiny_ijepa()
    loss, metrics = method.loss(noise_images(8))
    loss.backward()
    assert all(not p.requires_grad and p.grad is None for p in method.target_encoder.parameters())
    for module in (method.encoder, method.predictor):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in module.parameters())
    assert metrics["context_patches"] >= method.config.min_context


def test_prediction_does_not_see_the_target_patches_but_the_target_does() -> None:
    method = tiny_ijepa()
    images = torch.rand(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    masks = method.sample_masks(2, images.device)
    prediction, target = method.predict(images, masks)
    hidden = method.patch_mask(masks.targets.flatten(1)) & ~method.patch_mask(masks.context)
    changed = torch.where(hidden, 1 - images, images)  # new pixels wherever the context does not look
    prediction2, target2 = method.predict(changed, masks)
    torch.testing.assert_close(prediction2, prediction)
    assert not torch.allclose(target2, target)


@pytest.mark.parametrize("progress", [0.0, 0.5, 1.0])
def test_after_step_moves_the_target_encoder_by_a_linear_ema(progress: float) -> None:
    method = tiny_ijepa()
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in method.encoder.parameters()]
    target = [p.clone() for p in method.target_encoder.parameters()]
    method.after_step(progress)
    m = 0.996 + 0.004 * progress  # the reference's linear schedule from 0.996 to 1
    assert method.momentum == pytest.approx(m)
    for new, old, o in zip(method.target_encoder.parameters(), target, online, strict=True):
        torch.testing.assert_close(new, m * old + (1 - m) * o)


def test_needs_a_vit() -> None:
    with pytest.raises(SelfSupError, match="ViT"):
        build_method("ijepa", SPEC, encoder="convnet", encoder_kwargs={})
