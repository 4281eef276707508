"""CPC: patch grid, row-causal context, InfoNCE targets k rows below that share no pixel with the context,
loss reference, one step."""
import math

import pytest
import torch

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.errors import SelfSupError
from selfsup.methods import cpc as cpc_module
from selfsup.methods.base import build_method
from selfsup.methods.cpc import RowContext, future_pairs
from selfsup.nets import freeze_upto

TINY = TINY_OPTIONS["cpc"]


def test_patches_are_the_overlapping_grid_in_row_major_order() -> None:
    method = build_method("cpc", SPEC, **TINY)
    x = torch.rand(2, 1, 28, 28)
    grid = method.encoder.patches(x)
    assert grid.shape == (2, 6, 6, 1, 8, 8) and method.encoder.grid_size == 6
    for i in range(6):
        for j in range(6):
            assert torch.equal(grid[:, i, j], x[:, :, 4 * i:4 * i + 8, 4 * j:4 * j + 8])


def test_future_pairs_pair_each_prediction_with_the_patch_k_rows_below() -> None:
    n, g, k = 2, 5, 2
    # Every grid cell holds its own (image, row, column) as its embedding.
    z = torch.zeros(n, 3, g, g)
    for b in range(n):
        for i in range(g):
            for j in range(g):
                z[b, :, i, j] = torch.tensor([b, i, j], dtype=torch.float)
    queries, positives = future_pairs(z, z, k)
    expected_q = [(b, i, j) for b in range(n) for i in range(g - k) for j in range(g)]
    assert [tuple(int(v) for v in q) for q in queries] == expected_q
    assert [tuple(int(v) for v in p) for p in positives] == [(b, i + k, j) for b, i, j in expected_q]


def test_context_at_a_row_sees_only_the_rows_above_and_itself() -> None:
    torch.manual_seed(0)
    context = RowContext(4, 6, layers=2)
    z = torch.randn(1, 4, 6, 6)
    changed = z.clone()
    changed[:, :, 3] += 1.0  # change row 3 only
    before, after = context(z), context(changed)
    assert torch.equal(before[:, :, :3], after[:, :, :3])
    assert not torch.allclose(before[:, :, 3], after[:, :, 3])


def _pixel_rows_of_grid_rows(method) -> list[set[int]]:
    """For each grid row of the method's own patch grid, the image pixel rows its patches cover."""
    rows = torch.arange(28, dtype=torch.float).view(1, 1, 28, 1).expand(1, 1, 28, 28)
    grid = method.encoder.patches(rows)  # (1, G, G, 1, p, p): every pixel holds its own row index
    return [set(grid[0, i].flatten().long().tolist()) for i in range(grid.shape[1])]


@pytest.mark.parametrize("overrides", [{}, {"patch_size": 8, "patch_stride": 3, "prediction_steps": 5},
                                       {"patch_size": 7, "patch_stride": 7, "prediction_steps": 2}])
def test_predicted_targets_share_no_pixel_row_with_the_context(overrides, monkeypatch) -> None:
    """Every (context row i, target row i + k) pair the loss actually scores: the target patch's pixel rows
    are disjoint from those of all context rows <= i, so a prediction cannot copy pixels it has seen."""
    method = build_method("cpc", SPEC, **{**TINY, **overrides})
    scored: list[int] = []

    def recording_pairs(prediction, z, k):
        scored.append(k)
        return future_pairs(prediction, z, k)

    monkeypatch.setattr(cpc_module, "future_pairs", recording_pairs)
    _, metrics = method.loss(noise_images(2))
    assert scored and set(metrics) == {"pretext_acc"} | {f"acc_k{k}" for k in scored}
    pixel_rows = _pixel_rows_of_grid_rows(method)
    g = len(pixel_rows)
    # Which grid rows each query row of offset k is paired with, read off future_pairs on a row-index map.
    row_index = torch.arange(g, dtype=torch.float).view(1, 1, g, 1).expand(1, 1, g, g)
    for k in scored:
        queries, targets = future_pairs(row_index, row_index, k)
        for i, t in {(int(q), int(tt)) for q, tt in zip(queries[:, 0], targets[:, 0])}:
            seen = set().union(*pixel_rows[:i + 1])
            assert not pixel_rows[t] & seen, f"offset {k}: target row {t} overlaps context rows <= {i}"
    assert scored == list(method.offsets) and len(method.predictors) == len(scored)


def test_default_grid_skips_only_the_overlapping_offset() -> None:
    method = build_method("cpc", SPEC, **TINY)
    assert method.encoder.grid_size == 6 and method.offsets == (2, 3, 4)


@pytest.mark.parametrize("overrides", [{"prediction_steps": 1},  # k = 1 only, and it overlaps
                                       {"patch_size": 8, "patch_stride": 2, "prediction_steps": 3},
                                       {"patch_size": 16, "patch_stride": 4, "prediction_steps": 3}])
def test_refuses_a_config_with_no_non_overlapping_offset(overrides) -> None:
    with pytest.raises(SelfSupError, match="does not overlap the context"):
        build_method("cpc", SPEC, **{**TINY, **overrides})


def test_loss_is_info_nce_over_all_patches_at_each_offset() -> None:
    torch.manual_seed(0)
    method = build_method("cpc", SPEC, prediction_steps=3, **TINY)
    assert method.offsets == (2, 3)
    x = noise_images(2)
    loss, metrics = method.loss(x)
    with torch.no_grad():
        z = method.encoder.patch_features(x.float() / 255).permute(0, 3, 1, 2)
        c = method.context(z)
        total = 0.0
        for index, k in enumerate((2, 3)):
            pred = method.predictors[index](c)
            q, p = future_pairs(pred, z, k)
            terms = []
            for m in range(len(q)):
                scores = [float(q[m] @ p[other]) for other in range(len(p))]
                top = max(scores)
                terms.append(-(scores[m] - top - math.log(sum(math.exp(s - top) for s in scores))))
            total += sum(terms) / len(terms)
    assert loss.item() == pytest.approx(total / 2, rel=1e-4)
    assert set(metrics) == {"pretext_acc", "acc_k2", "acc_k3"}


def test_encoder_mean_pools_patch_features_and_supports_blocks() -> None:
    method = build_method("cpc", SPEC, **TINY)
    x = torch.rand(3, 1, 28, 28)
    feats = method.encoder(x)
    assert feats.shape == (3, method.feature_dim) == (3, 8)
    torch.testing.assert_close(feats, method.encoder.patch_features(x).mean(dim=(1, 2)))
    assert method.encoder(x, upto="conv1").shape == (3, method.encoder.feature_dim("conv1"))
    assert freeze_upto(method.encoder, "conv2") == ["conv1", "conv2"]
    with pytest.raises(SelfSupError):
        build_method("cpc", SPEC, prediction_steps=6, **TINY)


def test_one_step_and_loss_decreases_on_a_tiny_batch() -> None:
    torch.manual_seed(0)
    method = build_method("cpc", SPEC)  # default widths: the tiny ones start with near-zero scores
    # Vertical stripes: the patches below are predictable from the rows above (unlike in pure noise).
    x = noise_images(4)[:, :, :1].expand(4, 1, 28, 28).contiguous()
    opt = torch.optim.Adam(method.trainable_parameters(), lr=3e-3)
    losses = []
    for step in range(20):
        loss, _ = method.loss(x)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(step / 20)
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.3
    ex = method.examples(x)
    assert ex["patches"].shape == (2 * 36, 1, 8, 8) and ex["images"].shape == (2, 1, 28, 28)
