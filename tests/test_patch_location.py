import numpy as np
import pytest
import torch

from conftest import TINY, fit_batch
from selfsup.data.base import DataSpec
from selfsup.methods.base import build_method
from selfsup.methods.patch_location import layout_picture
from selfsup.errors import SelfSupError
from selfsup.views.patches import NEIGHBOUR_OFFSETS, crop_patches, drop_colours, patch_pair_positions

def coordinate_images(n: int, size: int = 28) -> torch.Tensor:
    """Float images whose pixel (r, c) holds 100 r + c, so a crop tells where it was cut from."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    return (100 * yy + xx).float().expand(n, 1, size, size).clone()


def corner(patch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column of a crop's top-left pixel, read from the coordinate image."""
    v = patch[..., 0, 0, 0].long()
    return v // 100, v % 100


def test_neighbour_comes_from_the_claimed_position_without_jitter():
    images = coordinate_images(400)
    tops, lefts, labels = patch_pair_positions(400, 28, patch=7, gap=2, jitter=0,
                                               generator=torch.Generator().manual_seed(0))
    pairs = crop_patches(images, tops, lefts, 7)
    (rc, cc), (rn, cn) = corner(pairs[:, 0]), corner(pairs[:, 1])
    step = torch.tensor(NEIGHBOUR_OFFSETS)[labels]
    assert torch.equal(rn - rc, 9 * step[:, 0]) and torch.equal(cn - cc, 9 * step[:, 1])
    assert set(labels.tolist()) == set(range(8))
    # a patch is a plain crop: every pixel is its top-left pixel plus its offset inside the patch
    offsets = (100 * torch.arange(7)[:, None] + torch.arange(7)).float()
    assert torch.equal(pairs - pairs[..., :1, :1], offsets.expand_as(pairs))


def test_jitter_moves_each_patch_by_at_most_jitter():
    images = coordinate_images(2000)
    tops, lefts, labels = patch_pair_positions(2000, 28, patch=7, gap=2, jitter=1,
                                               generator=torch.Generator().manual_seed(1))
    pairs = crop_patches(images, tops, lefts, 7)
    (rc, cc), (rn, cn) = corner(pairs[:, 0]), corner(pairs[:, 1])
    step = torch.tensor(NEIGHBOUR_OFFSETS)[labels]
    dr, dc = rn - rc - 9 * step[:, 0], cn - cc - 9 * step[:, 1]
    assert set(dr.tolist()) == set(dc.tolist()) == {-2, -1, 0, 1, 2}  # two patches, each +-1
    assert (tops >= 0).all() and (tops + 7 <= 28).all() and (lefts >= 0).all() and (lefts + 7 <= 28).all()


def test_layout_too_big_for_the_image_is_refused():
    with pytest.raises(SelfSupError):
        build_method("patch-location", DataSpec("image", 1, 28, 28), patch=8, gap=3, **TINY)


def test_method_pairs_are_centre_and_labelled_neighbour():
    method = build_method("patch-location", DataSpec("image", 1, 28, 28), jitter=0, **TINY)
    centre, neighbour, labels = method.make_pairs(coordinate_images(64))
    (rc, cc), (rn, cn) = corner(centre), corner(neighbour)
    step = torch.tensor(NEIGHBOUR_OFFSETS)[labels]
    assert torch.equal(rn - rc, 9 * step[:, 0]) and torch.equal(cn - cc, 9 * step[:, 1])


def test_colour_dropping_keeps_exactly_one_channel_per_patch():
    patches = torch.rand(50, 2, 3, 7, 7) + 1.0  # values in [1, 2]: noise of 1/100 std stays far below
    dropped = drop_colours(patches, generator=torch.Generator().manual_seed(0))
    same = (dropped == patches).flatten(-2).all(-1)  # (50, 2, 3)
    assert torch.equal(same.sum(-1), torch.ones(50, 2, dtype=torch.long))
    assert dropped[~same].abs().max() < 0.05
    gray = torch.rand(4, 2, 1, 7, 7)
    assert torch.equal(drop_colours(gray), gray)


def test_layout_picture_puts_the_neighbour_at_its_position():
    centre = torch.full((8, 1, 2, 2), 0.5)
    neighbour = torch.ones(8, 1, 2, 2)
    pic = layout_picture(centre, neighbour, torch.arange(8), border=0)  # (8, 1, 6, 6)
    for label, (dr, dc) in enumerate(NEIGHBOUR_OFFSETS):
        r, c = 2 * (1 + dr), 2 * (1 + dc)
        assert (pic[label, 0, r:r + 2, c:c + 2] == 1).all() and (pic[label, 0, 2:4, 2:4] == 0.5).all()
        assert pic[label].sum() == 4 * 1 + 4 * 0.5  # nothing else drawn


def test_colour_images_train_and_examples_show_both_layouts():
    method = build_method("patch-location", DataSpec("image", 3, 28, 28), **TINY)
    batch = torch.randint(0, 256, (6, 3, 28, 28), dtype=torch.uint8)
    loss, _ = method.loss(batch)  # with colour dropping, which grey images skip
    assert loss.item() > 0
    ex = method.examples(batch)
    assert ex["true_layout"].shape == ex["predicted_layout"].shape == (6, 3, 24, 24)
    assert ex["image"].shape == (6, 3, 28, 28) and ex["predicted_position"].shape == (6,)


def test_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    method = build_method("patch-location", DataSpec("image", 1, 28, 28), **TINY)
    # the position is visible in the pixels here: each 9x9 cell of the layout has its own grey level
    yy, xx = torch.meshgrid(torch.arange(28), torch.arange(28), indexing="ij")
    batch = ((yy // 9).clamp(max=2) * 3 + (xx // 9).clamp(max=2)).div(8).expand(16, 1, 28, 28)
    losses, _ = fit_batch(method, batch, steps=120, lr=3e-3)
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])
