"""NNCLR: the loss against the paper's formula written with loops, the nearest-neighbour swap on hand-made
embeddings, no gradient through the neighbour, the support-set update, and the method's loss end to end."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.errors import SelfSupError
from selfsup.losses.nearest_neighbour import nnclr_loss
from selfsup.methods.base import build_method

TINY = TINY_OPTIONS["nnclr"]


def reference_nnclr(neighbours: torch.Tensor, predictions: torch.Tensor, t: float) -> float:
    """Dwibedi et al. 2021, eq. 2 and its symmetric term, with loops: for each i,
    -log exp(nn_i.p_i/t) / sum_k exp(nn_i.p_k/t) and -log exp(nn_i.p_i/t) / sum_k exp(nn_k.p_i/t), unit vectors."""
    nn_ = [F.normalize(v, dim=0) for v in neighbours]
    p = [F.normalize(v, dim=0) for v in predictions]
    n = len(nn_)
    total = 0.0
    for i in range(n):
        positive = math.exp(float(nn_[i] @ p[i]) / t)
        total += -math.log(positive / sum(math.exp(float(nn_[i] @ p[k]) / t) for k in range(n)))
        total += -math.log(positive / sum(math.exp(float(nn_[k] @ p[i]) / t) for k in range(n)))
    return total / (2 * n)


def nearest_by_distance(z: torch.Tensor, support: torch.Tensor) -> list[int]:
    """argmin_q ||z/|z| - q|| over the support set, one row at a time (the paper's NN(z, Q))."""
    out = []
    for row in z:
        unit = row / row.norm()
        distances = [float((unit - q).norm()) for q in support]
        out.append(distances.index(min(distances)))
    return out


def test_loss_matches_the_papers_formula_written_with_loops() -> None:
    torch.manual_seed(0)
    neighbours, predictions = torch.randn(2, 6, 5, dtype=torch.float64)
    for t in (0.1, 0.5):
        assert nnclr_loss(neighbours, predictions, t).item() == pytest.approx(reference_nnclr(neighbours, predictions, t),
                                                                            rel=1e-10)


def test_global_batch_arguments_split_the_loss_exactly_across_processes() -> None:
    # Two "processes" of 3 rows each, each contrasting with all 6: the mean of their losses is the whole loss.
    neighbours, predictions = torch.randn(2, 6, 4, dtype=torch.float64)
    parts = [nnclr_loss(neighbours[s], predictions[s], 0.2, all_neighbours=neighbours, all_predictions=predictions,
                        first=s.start) for s in (slice(0, 3), slice(3, 6))]
    assert ((parts[0] + parts[1]) / 2).item() == pytest.approx(nnclr_loss(neighbours, predictions, 0.2).item(), rel=1e-12)


def test_the_neighbour_carries_no_gradient_the_prediction_does() -> None:
    neighbours = torch.randn(4, 3, requires_grad=True)
    predictions = torch.randn(4, 3, requires_grad=True)
    nnclr_loss(neighbours, predictions).backward()
    assert neighbours.grad is None
    assert predictions.grad.abs().sum() > 0


def test_the_swap_picks_the_nearest_support_set_item() -> None:
    method = build_method("nnclr", SPEC, **(TINY | {"projection_dim": 2, "support_size": 6}))
    angles = torch.tensor([0.0, 60.0, 120.0, 180.0, 240.0, 300.0]) * math.pi / 180
    method.queue.copy_(torch.stack([angles.cos(), angles.sin()], dim=1))  # six unit vectors, 60 degrees apart
    # Hand-made embeddings at 170, 10, 290 and 95 degrees, of any length: nearest items 3, 0, 5 and 2.
    z = torch.tensor([[-0.985, 0.174], [9.85, 1.74], [0.342, -0.940], [-0.0872, 0.996]])
    index, items = method.nearest_neighbours(z.requires_grad_())
    assert index.tolist() == [3, 0, 5, 2] == nearest_by_distance(z.detach(), method.queue)
    assert torch.equal(items, method.queue[[3, 0, 5, 2]])
    assert not items.requires_grad  # a stored vector: nothing flows back to z through the swap


def test_method_loss_uses_the_nearest_neighbours_and_then_enqueues_the_first_view() -> None:
    torch.manual_seed(0)
    method = build_method("nnclr", SPEC, **(TINY | {"support_size": 16}))
    queue_before = method.queue.clone()
    v1, v2 = torch.rand(2, 5, 1, 28, 28)
    loss, metrics = method.loss_from_views(v1, v2)
    with torch.no_grad():  # recompute every piece the way the paper describes it
        z1, z2 = method.projector(method.encoder(torch.cat([v1, v2]))).chunk(2)
        p1, p2 = method.predictor(torch.cat([z1, z2])).chunk(2)
    nn1 = queue_before[nearest_by_distance(z1, queue_before)]
    nn2 = queue_before[nearest_by_distance(z2, queue_before)]
    expected = (reference_nnclr(nn1, p2, 0.1) + reference_nnclr(nn2, p1, 0.1)) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-4)
    assert 0 <= float(metrics["pretext_acc"]) <= 1
    # The support set: the 5 normalised first-view projections in slots 0-4, the rest untouched.
    torch.testing.assert_close(method.queue[:5], F.normalize(z1, dim=1))
    assert torch.equal(method.queue[5:], queue_before[5:]) and int(method.queue_ptr) == 5


def test_support_set_wraps_around_only_when_training_and_refuses_a_batch_larger_than_itself() -> None:
    method = build_method("nnclr", SPEC, **(TINY | {"support_size": 8, "projection_dim": 3}))
    a, b = torch.randn(2, 6, 3)
    method._dequeue_and_enqueue(a)
    method._dequeue_and_enqueue(b)  # slots 6, 7, then 0-3
    assert int(method.queue_ptr) == 4
    torch.testing.assert_close(method.queue[6:], F.normalize(b[:2], dim=1))
    torch.testing.assert_close(method.queue[:4], F.normalize(b[2:], dim=1))
    torch.testing.assert_close(method.queue[4:6], F.normalize(a[4:], dim=1))
    method.eval()
    before = method.queue.clone()
    method.loss(noise_images(4))  # evaluation: the support set is only read
    assert torch.equal(method.queue, before) and int(method.queue_ptr) == 4
    with pytest.raises(SelfSupError, match="support_size"):
        method._dequeue_and_enqueue(torch.randn(9, 3))


def test_gradient_reaches_every_trained_part_but_not_the_support_set() -> None:
    torch.manual_seed(0)
    method = build_method("nnclr", SPEC, **TINY)
    loss, _ = method.loss(noise_images(8))
    loss.backward()
    for part in (method.encoder, method.projector, method.predictor):
        assert all(p.grad is not None for p in part.parameters())
    assert "queue" in dict(method.named_buffers()) and not method.queue.requires_grad
    assert method.config.temperature == 0.1 and method.view_config[1].solarize_p == 0.2  # the paper's, byol_views
