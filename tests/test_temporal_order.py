"""Shuffle and Learn: tuple order labels are exact, frames come from high-motion parts of the clip, and the
siamese classifier trains end to end."""
from __future__ import annotations

import torch

from conftest import TINY_OPTIONS
from selfsup.data.base import DataSpec
from selfsup.methods.base import build_method
from selfsup.methods.temporal_order import five_frames, frame_motion, order_tuples

TINY = TINY_OPTIONS["temporal-order"]


def time_stamped_clips(n: int, t: int, size: int = 4) -> torch.Tensor:
    """Clips whose frame k is filled with the value k (and clip i offset by 100 i): pixels tell the index."""
    stamps = torch.arange(t, dtype=torch.float32).view(1, t, 1, 1, 1) + 100 * torch.arange(n).view(n, 1, 1, 1, 1)
    return stamps.expand(n, t, 1, size, size).clone()


def moving_square_clips(n: int, t: int = 6, size: int = 16) -> torch.Tensor:
    """uint8 clips of a bright 4x4 square moving right by 2 pixels a frame from a random row."""
    g = torch.Generator().manual_seed(0)
    clips = torch.zeros(n, t, 1, size, size, dtype=torch.uint8)
    rows = torch.randint(0, size - 4, (n,), generator=g)
    for k in range(t):  # test fixture only
        for i in range(n):
            clips[i, k, 0, rows[i]:rows[i] + 4, 2 * k:2 * k + 4] = 255
    return clips


def test_order_labels_are_exact() -> None:
    clips = time_stamped_clips(40, 8)
    g = torch.Generator().manual_seed(0)
    tuples, labels, index = order_tuples(clips, positive_fraction=0.25, generator=g)
    assert labels.sum() == 10  # exactly round(0.25 * 40) positives
    # The pixels are the frame indices (and the clip's own offset): tuples are taken from their own clip.
    assert torch.equal(tuples[:, :, 0, 0, 0], index.float() + 100 * torch.arange(40).view(-1, 1))
    first, middle, last = index.unbind(1)
    between = (torch.minimum(first, last) < middle) & (middle < torch.maximum(first, last))
    assert torch.equal(between.long(), labels)  # 1 exactly when the middle frame lies between the ends
    assert ((last - first).abs() >= 2).all()  # the ends are b and d, with c strictly between them
    assert (first > last).any() and (first < last).any()  # both directions of time occur


def test_negatives_take_the_middle_from_outside_the_window() -> None:
    clips = time_stamped_clips(200, 8)
    g = torch.Generator().manual_seed(1)
    _, labels, index = order_tuples(clips, positive_fraction=0.0, generator=g)
    assert labels.sum() == 0
    first, middle, last = index.unbind(1)
    before = middle < torch.minimum(first, last)
    after = middle > torch.maximum(first, last)
    assert (before ^ after).all() and before.any() and after.any()


def test_frame_motion_hand_case_and_high_motion_sampling() -> None:
    clip = torch.tensor([0.0, 0.0, 2.0, 2.0, 6.0]).view(1, 5, 1, 1, 1)
    assert frame_motion(clip).tolist() == [[0.0, 2.0, 2.0, 4.0, 4.0]]
    # Frames 0..4 are identical, 5..9 change: the five frames are drawn from the moving part (4 is its edge).
    moving = torch.rand(30, 5, 1, 3, 3, generator=torch.Generator().manual_seed(0))
    clips = torch.cat([torch.zeros(30, 5, 1, 3, 3), moving], dim=1)
    chosen = five_frames(clips, torch.Generator().manual_seed(0))
    assert (chosen >= 4).all() and (chosen[:, 1:] > chosen[:, :-1]).all()
    uniform = five_frames(clips, torch.Generator().manual_seed(0), motion_weighting=False)
    assert (uniform < 4).any()


def test_examples_show_a_tuple_and_whether_it_is_in_order() -> None:
    clips = moving_square_clips(6)
    method = build_method("temporal-order", DataSpec("video", 1, 16, 16, frames=6), **TINY)
    examples = method.examples(clips)
    assert examples["first"].shape == (6, 1, 16, 16) and examples["in_order"].shape == (6,)


def test_classifier_fits_fixed_tuples() -> None:
    torch.manual_seed(0)
    clips = moving_square_clips(8).float() / 255
    tuples, labels, _ = order_tuples(clips, 0.5, generator=torch.Generator().manual_seed(0))
    method = build_method("temporal-order", DataSpec("video", 1, 16, 16, frames=6), **TINY)
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    losses = []
    for _ in range(30):
        loss = torch.nn.functional.cross_entropy(method.logits(tuples), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


def test_a_negative_never_takes_an_outside_frame_that_looks_like_c() -> None:
    # Five frames, so a..e are frames 0..4; frame 0 (a) repeats frame 2 (c), as after a bounce.
    clip = torch.tensor([2.0, 1.0, 2.0, 3.0, 4.0]).view(1, 5, 1, 1, 1).expand(400, 5, 1, 2, 2)
    g = torch.Generator().manual_seed(0)
    _, labels, index = order_tuples(clip, positive_fraction=0.0, generator=g, min_difference=0.5)
    assert labels.sum() == 0 and (index[:, 1] == 4).all()  # always e: (b, a, d) would be (b, c, d) pixel for pixel
    # Without the constraint, half of the negatives take a.
    _, _, index = order_tuples(clip, positive_fraction=0.0, generator=torch.Generator().manual_seed(0))
    assert 150 < (index[:, 1] == 0).sum() < 250


def test_the_default_class_ratio_is_the_papers_quarter_of_positives() -> None:
    method = build_method("temporal-order", DataSpec("video", 1, 16, 16, frames=6), **TINY)
    assert method.config.positive_fraction == 0.25 and method.config.min_difference > 0
    clips = moving_square_clips(64).float() / 255
    _, labels, _ = order_tuples(clips, method.config.positive_fraction, generator=torch.Generator().manual_seed(0),
                                min_difference=method.config.min_difference)
    assert labels.sum() == 16


def test_the_default_encoder_has_batch_norm_like_the_authors_caffenet() -> None:
    method = build_method("temporal-order", DataSpec("video", 1, 16, 16, frames=6))
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in method.encoder.modules())
