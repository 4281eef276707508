"""Ego-motion: the simulated views move exactly as the motor signal says, motor readings group into their
classes, the equivariance loss is zero for an exactly equivariant map and equals a plain reference, and
the invariant baseline keeps M_g = I."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_OPTIONS, egomotion_pairs as pairs
from selfsup.data.egomotion import MOTIONS, mosaics, motion_centres
from selfsup.methods.base import build_method
from selfsup.methods.egomotion import equivariance_loss

TINY = TINY_OPTIONS["egomotion"]


def test_mosaic_places_tiles_in_row_major_order() -> None:
    images = torch.arange(4, dtype=torch.uint8).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    canvas = mosaics(images, torch.tensor([[[3, 1], [0, 2]]]))
    assert canvas[0, 0].tolist() == [[3, 3, 1, 1], [3, 3, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]]


def test_translations_move_the_view_by_exactly_the_motor_shift() -> None:
    data = pairs(shift=4.0)
    f = data.frames.long()
    for motion, before, after in [
        ("right", f[:, 0, :, :, 4:], f[:, 1, :, :, :-4]),  # camera right: content moves left
        ("left", f[:, 0, :, :, :-4], f[:, 1, :, :, 4:]),
        ("down", f[:, 0, :, 4:, :], f[:, 1, :, :-4, :]),
        ("up", f[:, 0, :, :-4, :], f[:, 1, :, 4:, :]),
    ]:
        chosen = data.motion == MOTIONS.index(motion)
        assert chosen.sum() > 20
        assert torch.equal(before[chosen], after[chosen]), motion


def test_forward_zooms_in_about_the_centre() -> None:
    data = pairs(zoom=2.0)
    forward = data.motion == MOTIONS.index("forward")
    f = data.frames[forward].float()
    # Zooming in 2x about the centre = the central 14x14 of the view upsampled 2x (borders aside).
    centre = F.interpolate(f[:, 0, :, 7:21, 7:21], scale_factor=2, mode="bilinear", align_corners=False)
    assert (centre[..., 1:-1, 1:-1] - f[:, 1, :, 1:-1, 1:-1]).abs().max() <= 1  # uint8 rounding only
    backward = data.frames[data.motion == MOTIONS.index("backward")].float()
    # Zooming out shows more: the before-view's content shrinks into the after-view's centre.
    shrunk = F.avg_pool2d(backward[:, 0], 2)
    assert (shrunk - backward[:, 1, :, 7:21, 7:21]).abs().mean() < (shrunk - backward[:, 1, :, :14, :14]).abs().mean()


def test_motor_signals_group_into_their_motion_classes() -> None:
    exact = pairs()
    assert torch.equal(exact.motor, motion_centres(4.0, 1.25)[exact.motion])
    noisy = pairs(jitter=0.5)
    distances = torch.cdist(noisy.motor, motion_centres(4.0, 1.25))
    assert torch.equal(noisy.motion, distances.argmin(1))
    assert set(noisy.motion.tolist()) == set(range(6))


def test_pairs_are_deterministic_and_subset_keeps_alignment() -> None:
    a, b, c = pairs(seed=2), pairs(seed=2), pairs(seed=3)
    assert torch.equal(a.frames, b.frames) and torch.equal(a.motion, b.motion)
    assert not torch.equal(a.frames, c.frames)
    s = a.subset(torch.tensor([5, 2]))
    batch = s.batch(torch.tensor([1]))
    assert torch.equal(batch["frames"][0], a.frames[2]) and batch["motion"][0] == a.motion[2]
    assert a.spec.modality == "video" and a.spec.frames == 2 and a.spec.extra["motions"] == list(MOTIONS)


def test_loss_is_zero_for_an_exactly_equivariant_map() -> None:
    # z(x) = the pixels of x on a torus; a move g is a circular shift, so z(g.x) = M_g z(x) with M_g the
    # shift's permutation matrix: exactly equivariant.
    g = torch.Generator().manual_seed(0)
    images = torch.rand(6, 5, 5, generator=g)
    shifts = [(0, -1), (0, 1), (-1, 0), (1, 0)]
    index = torch.arange(25).view(5, 5)
    maps = torch.stack([F.one_hot(torch.roll(index, s, (0, 1)).flatten(), 25).float() for s in shifts])
    motion = torch.tensor([0, 1, 2, 3, 1, 0])
    moved = torch.stack([torch.roll(images[i], shifts[m], (0, 1)) for i, m in enumerate(motion.tolist())])
    z, z_moved = images.flatten(1), moved.flatten(1)
    predicted = (maps[motion] @ z.unsqueeze(-1)).squeeze(-1)
    assert torch.equal(predicted, z_moved)
    smallest_mismatch = (predicted - z_moved.roll(-1, 0)).norm(dim=1).min().item()
    assert equivariance_loss(z, z_moved, motion, maps, margin=0.9 * smallest_mismatch).item() == 0.0
    assert equivariance_loss(z, z_moved, (motion + 1) % 4, maps, margin=0.9 * smallest_mismatch).item() > 0


def test_loss_matches_plain_reference() -> None:
    g = torch.Generator().manual_seed(1)
    z, z_moved, maps = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g), torch.randn(2, 3, 3, generator=g)
    motion = torch.tensor([1, 0, 0, 1])
    total = 0.0
    for i in range(4):
        predicted = maps[motion[i]] @ z[i]
        matched = float(((predicted - z_moved[i]) ** 2).sum())
        other = float((predicted - z_moved[(i + 1) % 4]).norm())
        total += matched + max(0.0, 2.0 - other) ** 2
    assert equivariance_loss(z, z_moved, motion, maps, margin=2.0).item() == pytest.approx(total / 4, rel=1e-5)


def test_training_lowers_the_loss_and_features_come_from_the_first_view() -> None:
    torch.manual_seed(0)
    data = pairs()
    method = build_method("egomotion", data.spec, **TINY)
    batch = data.batch(torch.arange(32))
    opt = torch.optim.Adam(method.trainable_parameters(), lr=3e-3)
    losses = []
    for step in range(30):
        loss, _ = method.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(step / 30)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert torch.equal(method.features(batch), method.features(batch["frames"][:, 0]))
    assert method.examples(batch)["before"].shape == (8, 1, 28, 28)


def test_invariant_baseline_keeps_identity_maps() -> None:
    data = pairs()
    method = build_method("egomotion-invariant", data.spec, **TINY)
    assert not method.maps.requires_grad and method.maps not in set(method.trainable_parameters())
    assert torch.equal(method.maps, torch.eye(8).expand(6, -1, -1))
    loss, _ = method.loss(data.batch(torch.arange(8)))
    loss.backward()
    assert method.maps.grad is None
