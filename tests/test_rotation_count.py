"""RotNet with 2, 4 or 8 rotations (Gidaris et al. 2018, Table 2)."""
import math

import pytest
import torch

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods import build_method
from selfsup.views.geometry import all_rotations, rotate
from conftest import TINY


@pytest.mark.parametrize("count", [2, 4])
def test_two_and_four_rotations_are_exact_rot90(count):
    x = torch.randint(0, 256, (5, 2, 7, 7), dtype=torch.uint8)
    rotated, labels = all_rotations(x, count)
    assert rotated.shape == (5 * count, 2, 7, 7)
    assert labels.tolist() == [k for k in range(count) for _ in range(5)]
    quarter_turns = 4 // count  # label k is k * 360/count degrees = k * (4/count) quarter turns
    for i in range(5 * count):
        expected = torch.rot90(x[i % 5], int(labels[i]) * quarter_turns, dims=(1, 2))
        assert torch.equal(rotated[i], expected)


def test_eight_rotations_keep_every_image_in_all_angles_and_90_multiples_exact():
    x = torch.rand(3, 1, 9, 9)
    rotated, labels = all_rotations(x, 8)
    assert rotated.shape == (24, 1, 9, 9)
    assert labels.tolist() == [k for k in range(8) for _ in range(3)]
    for i in range(24):
        k = int(labels[i])
        if k % 2 == 0:
            assert torch.equal(rotated[i], torch.rot90(x[i % 3], k // 2, dims=(1, 2)))
        else:  # the 45-degree ones: the exact quarter turn, then 45 degrees more
            assert torch.allclose(rotated[i], rotate(torch.rot90(x[i % 3], k // 2, dims=(1, 2))[None], 45)[0])


@pytest.mark.parametrize("size", [6, 7, 28])
def test_affine_rotation_by_90_multiples_equals_rot90(size):
    x = torch.rand(4, 2, size, size)
    for k in range(4):
        assert torch.allclose(rotate(x, 90.0 * k), torch.rot90(x, k, dims=(2, 3)), atol=1e-5)


def bilinear_rotation_reference(image: list[list[float]], degrees: float) -> list[list[float]]:
    """Plain-Python rotation about the centre: each output pixel samples the input at its position turned
    back by `degrees` (bilinear, zeros outside). Independent of affine_grid / grid_sample."""
    n = len(image)
    c = (n - 1) / 2
    a = math.radians(degrees)
    out = [[0.0] * n for _ in range(n)]
    for r in range(n):
        for col in range(n):
            dx, dy = col - c, r - c
            sx = c + math.cos(a) * dx - math.sin(a) * dy
            sy = c + math.sin(a) * dx + math.cos(a) * dy
            x0, y0 = math.floor(sx), math.floor(sy)
            total = 0.0
            for yy, wy in ((y0, 1 - (sy - y0)), (y0 + 1, sy - y0)):
                for xx, wx in ((x0, 1 - (sx - x0)), (x0 + 1, sx - x0)):
                    if 0 <= yy < n and 0 <= xx < n:
                        total += wy * wx * image[yy][xx]
            out[r][col] = total
    return out


def test_45_degrees_turns_a_centred_plus_into_an_x():
    n, c = 21, 10
    plus = torch.zeros(1, 1, n, n)
    plus[0, 0, c, :] = 1.0
    plus[0, 0, :, c] = 1.0
    rotated, labels = all_rotations(plus, 8)
    x_shape = rotated[1, 0]  # label 1: 45 degrees
    assert int(labels[1]) == 1
    for d in range(-7, 8):  # the diagonals, as far as they map inside the plus's arms (|d| sqrt 2 <= 10)
        assert x_shape[c + d, c + d] == pytest.approx(1.0, abs=1e-5)
        assert x_shape[c + d, c - d] == pytest.approx(1.0, abs=1e-5)
    for d in (2, 5, 10):  # the plus's own arms are gone
        for r, col in ((c, c + d), (c, c - d), (c + d, c), (c - d, c)):
            assert x_shape[r, col] == pytest.approx(0.0, abs=1e-5)
    reference = torch.tensor(bilinear_rotation_reference(plus[0, 0].tolist(), 45.0))
    assert torch.allclose(x_shape, reference, atol=1e-5)
    # 135 degrees: the X again (the plus has 90-degree symmetry)
    assert torch.allclose(rotated[3, 0], x_shape, atol=1e-5)


def test_bilinear_reference_agrees_on_an_asymmetric_image_at_30_degrees():
    torch.manual_seed(0)
    x = torch.rand(9, 9)
    assert torch.allclose(rotate(x[None, None], 30.0)[0, 0],
                          torch.tensor(bilinear_rotation_reference(x.tolist(), 30.0)), atol=1e-5)


@pytest.mark.parametrize("count", [2, 4, 8])
def test_head_size_loss_and_examples_follow_the_rotation_count(count, tiny_data):
    torch.manual_seed(0)
    m = build_method("rotation", tiny_data.spec, rotations=count, **TINY)
    assert m.head.out_features == count
    batch = tiny_data.images[:6]
    loss, metrics = m.loss(batch)
    images, labels = all_rotations(batch.float() / 255, count)
    reference = torch.nn.functional.cross_entropy(m.head(m.encoder(images)), labels)
    assert torch.allclose(loss, reference) and 0 <= metrics["pretext_acc"] <= 1
    ex = m.examples(tiny_data.images[:8])
    step = 360 // count
    assert ex["rotated"].shape == (4 * count, 1, 28, 28)
    assert ex["true_deg"].tolist() == [k * step for k in range(count) for _ in range(4)]
    assert set(ex["pred_deg"].tolist()) <= {k * step for k in range(count)}


def test_default_is_the_papers_four_rotations():
    m = build_method("rotation", DataSpec(channels=1, height=28, width=28), **TINY)
    assert m.config.rotations == 4 and m.head.out_features == 4


@pytest.mark.parametrize("count", [0, 3, 6, 16])
def test_unknown_rotation_count_is_a_clear_error(count):
    with pytest.raises(SelfSupError, match="2, 4 or 8 rotations"):
        build_method("rotation", DataSpec(channels=1, height=28, width=28), rotations=count, **TINY)
    with pytest.raises(SelfSupError, match="rotations=" + str(count)):
        all_rotations(torch.zeros(1, 1, 4, 4), count)
