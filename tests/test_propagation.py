"""Mask propagation: ground-truth attention reproduces the masks exactly (from the previous frame and from
the first), label pooling is exact on aligned blocks, and IoU matches hand counts."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from selfsup.data.sprites import make_sprite_clips
from selfsup.evaluate.propagation import (cell_grid, copy_first_frame, mask_iou, pool_labels, propagate_masks,
                                          tracking_iou, unpool_labels)

H = W = 12


def shift_attention(dy: int, dx: int, n: int) -> torch.Tensor:
    """(N, HW, HW): target pixel (y, x) attends only to reference pixel (y - dy, x - dx) (on a torus)."""
    index = torch.arange(H * W).view(H, W)
    source = torch.roll(index, shifts=(dy, dx), dims=(0, 1)).flatten()
    return torch.nn.functional.one_hot(source, H * W).float().expand(n, -1, -1)


def moving_masks(n: int, t: int, velocity: tuple[int, int]) -> torch.Tensor:
    """(N, T, H, W) label maps: two rectangles (labels 1, 2) translating by `velocity` each frame."""
    first = torch.zeros(n, H, W, dtype=torch.long)
    first[:, 1:4, 2:6] = 1
    first[:, 6:10, 5:8] = 2
    return torch.stack([torch.roll(first, (k * velocity[0], k * velocity[1]), dims=(1, 2)) for k in range(t)], 1)


def test_ground_truth_attention_from_the_previous_frame_reproduces_the_masks() -> None:
    truth = moving_masks(2, 5, (1, 2))
    frames = torch.zeros(2, 5, 1, H, W)
    attend = lambda reference, target: shift_attention(1, 2, len(target))
    predicted = propagate_masks(attend, frames, truth[:, 0], 3, reference="previous")
    assert torch.equal(predicted, truth)
    assert (mask_iou(predicted, truth, 3) == 1).all()


def test_ground_truth_attention_from_the_first_frame_reproduces_the_masks() -> None:
    truth = moving_masks(1, 4, (2, -1))
    frames = torch.arange(4, dtype=torch.float32).view(1, 4, 1, 1, 1).expand(1, 4, 1, H, W)  # pixels = time
    attend = lambda reference, target: shift_attention(2 * int(target[0, 0, 0, 0]), -int(target[0, 0, 0, 0]), 1)
    predicted = propagate_masks(attend, frames, truth[:, 0], 3, reference="first")
    assert torch.equal(predicted, truth)


def test_pooled_labels_on_aligned_blocks_survive_the_round_trip() -> None:
    # Stripes, so bilinear upsampling only mixes two cells along one axis: the own cell keeps >= 5/8 weight.
    # (Where three cells of two labels meet at a corner, bilinear upsampling can flip a corner pixel.)
    coarse = torch.tensor([[[0, 1, 2], [0, 1, 2], [0, 1, 2]]])
    labels = coarse.repeat_interleave(4, 1).repeat_interleave(4, 2)  # 12x12, constant on 4x4 blocks
    soft = pool_labels(labels, 3, (3, 3))
    assert soft.shape == (1, 9, 3) and torch.equal(soft.argmax(-1), coarse.flatten(1))
    assert torch.equal(soft.sum(-1), torch.ones(1, 9))
    assert torch.equal(unpool_labels(soft, (3, 3), (12, 12)), labels)
    assert cell_grid(9, (12, 12)) == (3, 3) and cell_grid(144, (12, 12)) == (12, 12)


def test_mask_iou_hand_counts() -> None:
    truth = torch.tensor([[[[1, 1, 0], [0, 0, 0]]]])  # object 1: 2 pixels; object 2 absent
    predicted = torch.tensor([[[[1, 0, 1], [0, 0, 0]]]])  # object 1: 1 right, 1 wrong; object 2 absent
    iou = mask_iou(predicted, truth, 3)
    assert iou.shape == (1, 1, 2)
    assert iou[0, 0, 0].item() == pytest.approx(1 / 3)  # |{(0,0)}| / |{(0,0), (0,1), (0,2)}|
    assert iou[0, 0, 1].item() == 1.0  # absent from both
    predicted[0, 0, 1, 1] = 2
    assert mask_iou(predicted, truth, 3)[0, 0, 1].item() == 0.0  # predicted but absent


def test_copy_first_frame_repeats_it() -> None:
    first = torch.randint(0, 3, (2, H, W))
    copied = copy_first_frame(first, 4)
    assert copied.shape == (2, 4, H, W) and all(torch.equal(copied[:, k], first) for k in range(4))


class PixelIdentity(nn.Module):
    """A stand-in method whose attention copies every pixel from the same pixel of the reference."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def attention(self, reference: torch.Tensor, target: torch.Tensor, temperature=None) -> torch.Tensor:
        return torch.eye(reference.shape[-2] * reference.shape[-1]).expand(len(target), -1, -1)


def test_tracking_iou_of_a_copying_attention_equals_the_copy_baseline() -> None:
    images = torch.zeros(4, 1, 8, 8, dtype=torch.uint8)
    images[:, :, 1:7, 1:7] = 200
    video = make_sprite_clips(images, torch.arange(4), 3, frames=4, canvas=16, sprite_size=8, min_speed=2)
    scores = tracking_iou(PixelIdentity(), video, reference="previous")
    assert scores["iou"] == pytest.approx(scores["copy_first_iou"]) and scores["iou"] < 1  # objects moved
