"""Moving sprites: trajectories bounce, rendering pastes the real sprite exactly, occlusion and colour
follow their rules, the data is a pure function of the seed, and object crops are centred and labelled."""
from __future__ import annotations

import torch

from selfsup.data.base import ImageData
from selfsup.data.registry import DATASETS
from selfsup.data.sprites import (ALPHA_THRESHOLD, PALETTE, VideoData, bounce, crop_windows, make_sprite_clips,
                                  object_frames, render_layers, visible_segmentation)


def tiny_images(n: int = 12, size: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    """Sprites with a dark frame and a bright, distinct-valued inside, so masks and values are exact."""
    g = torch.Generator().manual_seed(0)
    images = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    images[:, :, 1:-1, 1:-1] = torch.randint(40, 256, (n, 1, size - 2, size - 2), generator=g, dtype=torch.uint8)
    return images, torch.arange(n) % 3


def test_bounce_reflects_off_both_walls() -> None:
    positions = torch.tensor([0.0, 3.0, 10.0, 12.0, 20.0, 23.0, -2.0])
    assert bounce(positions, 10.0).tolist() == [0.0, 3.0, 10.0, 8.0, 0.0, 3.0, 2.0]


def test_same_seed_same_clips_and_other_seed_differs() -> None:
    images, labels = tiny_images()
    a = make_sprite_clips(images, labels, 6, frames=5, canvas=20, sprite_size=8, seed=3)
    b = make_sprite_clips(images, labels, 6, frames=5, canvas=20, sprite_size=8, seed=3)
    c = make_sprite_clips(images, labels, 6, frames=5, canvas=20, sprite_size=8, seed=4)
    assert torch.equal(a.clips, b.clips) and torch.equal(a.segmentation, b.segmentation)
    assert not torch.equal(a.clips, c.clips)
    assert a.clips.shape == (6, 5, 1, 20, 20) and a.spec.modality == "video" and a.spec.frames == 5


def test_positions_stay_on_canvas_and_move_at_the_drawn_speed() -> None:
    images, labels = tiny_images()
    v = make_sprite_clips(images, labels, 30, frames=6, canvas=40, sprite_size=8, min_speed=2, max_speed=2)
    assert v.positions.min() >= 0 and v.positions.max() <= 40 - 8
    steps = (v.positions[:, 1:] - v.positions[:, :-1]).float().norm(dim=-1)
    # Speed 2 px/frame; integer rounding moves each coordinate by at most 0.5 per end, bounces only shorten.
    assert steps.max() <= 2 + 2 ** 0.5 + 1e-6 and steps.mean() > 1.5


def test_one_sprite_is_pasted_exactly_where_its_position_says() -> None:
    images, labels = tiny_images(1)
    v = make_sprite_clips(images, labels, 4, frames=3, canvas=16, sprite_size=8, objects=1)
    for n in range(4):
        for t in range(3):
            y, x = v.positions[n, t, 0].tolist()
            expected = torch.zeros(16, 16, dtype=torch.uint8)
            expected[y:y + 8, x:x + 8] = images[0, 0]
            assert torch.equal(v.clips[n, t, 0], expected)
            assert torch.equal(v.segmentation[n, t], (expected >= ALPHA_THRESHOLD).to(torch.uint8))
    assert v.object_areas[0, 0] == 36  # the 6x6 bright inside


def test_later_objects_occlude_earlier_ones() -> None:
    sprites = torch.full((1, 2, 4, 4), 200.0)
    sprites[0, 1, :2] = 0.0  # object 2 covers only its bottom half
    positions = torch.tensor([[[[2, 2], [2, 2]]]])  # (N=1, T=1, O=2, 2): both at the same place
    layers = render_layers(sprites, positions, 8)
    seg = visible_segmentation(layers)[0, 0]
    assert (seg[2:4, 2:6] == 1).all() and (seg[4:6, 2:6] == 2).all()
    assert (seg == 0).sum() == 64 - 16


def test_colour_clips_are_intensity_times_distinct_object_colours() -> None:
    images, labels = tiny_images()
    gray = make_sprite_clips(images, labels, 5, frames=3, canvas=16, sprite_size=8, seed=1)
    color = make_sprite_clips(images, labels, 5, frames=3, canvas=16, sprite_size=8, seed=1, colors=True)
    assert torch.equal(color.clips.amax(dim=2), gray.clips[:, :, 0])  # grey = max over RGB, exactly
    assert torch.equal(color.segmentation, gray.segmentation)
    for n in range(5):
        assert not torch.equal(color.object_colors[n, 0], color.object_colors[n, 1])
        for k in range(2):
            assert any(torch.equal(color.object_colors[n, k], p) for p in PALETTE)
            pixels = color.segmentation[n] == k + 1  # (T, H, W)
            expected = (gray.clips[:, :, 0][n][pixels].float()[:, None] * color.object_colors[n, k]).round()
            assert torch.equal(color.clips[n].permute(0, 2, 3, 1)[pixels].float(), expected)


def test_the_spec_of_colour_clips_names_their_palette() -> None:
    images, labels = tiny_images()
    gray = make_sprite_clips(images, labels, 3, frames=3, canvas=16, sprite_size=8)
    color = make_sprite_clips(images, labels, 3, frames=3, canvas=16, sprite_size=8, colors=True)
    assert gray.spec.palette == ()
    assert torch.equal(torch.tensor(color.spec.palette), PALETTE)
    assert color.subset(torch.tensor([0, 2])).spec.palette == color.spec.palette


def test_subset_keeps_ground_truth_aligned() -> None:
    images, labels = tiny_images()
    v = make_sprite_clips(images, labels, 6, frames=3, canvas=16, sprite_size=8)
    s = v.subset(torch.tensor([4, 1]))
    assert torch.equal(s.batch(torch.tensor([0])), v.clips[4:5])
    assert torch.equal(s.positions[1], v.positions[1]) and torch.equal(s.object_labels[0], v.object_labels[4])
    assert torch.equal(s.labels, v.object_labels[[4, 1], 0])


def test_crop_windows_hand_case() -> None:
    frames = torch.arange(16, dtype=torch.uint8).view(1, 1, 4, 4)
    crop = crop_windows(frames, torch.tensor([[-1, 2]]), 3)[0, 0]
    assert crop.tolist() == [[0, 0, 0], [2, 3, 0], [6, 7, 0]]


def test_object_frames_are_centred_on_the_labelled_object() -> None:
    images, labels = tiny_images()
    v = make_sprite_clips(images, labels, 8, frames=4, canvas=24, sprite_size=8, objects=1)
    data = object_frames(v, frames_per_object=2)
    assert isinstance(data, ImageData) and len(data) == 16 and data.images.shape == (16, 1, 24, 24)
    # One object per clip: every crop shows its sprite with the sprite's centre at the crop's centre.
    for i in range(len(data)):
        window = data.images[i, 0, 8:16, 8:16]
        assert any(torch.equal(window, s[0]) for s in images)
    assert torch.equal(data.labels.sort().values, v.object_labels[:, 0].repeat_interleave(2).sort().values)


def test_object_frames_drop_mostly_hidden_objects() -> None:
    images, labels = tiny_images()
    v = make_sprite_clips(images, labels, 40, frames=4, canvas=12, sprite_size=8, objects=2)
    kept = object_frames(v, frames_per_object=4, min_visible=0.99)
    every = object_frames(v, frames_per_object=4, min_visible=0.0)
    assert len(every) == 40 * 2 * 4 and len(kept) < len(every)


def test_registered_datasets_exist() -> None:
    assert {"sprites", "sprites-color", "sprites-mnist", "egomotion"} <= set(DATASETS.names())
    assert isinstance(make_sprite_clips(*tiny_images(), 1, canvas=16, sprite_size=8), VideoData)
