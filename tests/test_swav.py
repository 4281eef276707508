"""SwAV: Sinkhorn-Knopp codes (a plain reference, the equal partition), the swapped-prediction loss against a
plain computation, codes as targets (no gradient), frozen prototypes, prototype normalisation and the queue."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.errors import SelfSupError
from selfsup.losses.clustering import sinkhorn_knopp, swapped_prediction_loss
from selfsup.methods.base import build_method


def reference_sinkhorn(scores: list[list[float]], epsilon: float, iterations: int) -> list[list[float]]:
    """The paper's Algorithm (appendix A.1) with plain Python numbers, B samples x K prototypes."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(s / epsilon) for s in row] for row in scores]
    total = sum(map(sum, q))
    q = [[x / total for x in row] for row in q]
    for _ in range(iterations):
        prototype_totals = [sum(q[i][j] for i in range(b)) for j in range(k)]
        q = [[q[i][j] / prototype_totals[j] / k for j in range(k)] for i in range(b)]
        sample_totals = [sum(row) for row in q]
        q = [[x / sample_totals[i] / b for x in row] for i, row in enumerate(q)]
    return [[x * b for x in row] for row in q]


def test_sinkhorn_equals_the_reference_and_every_code_sums_to_one() -> None:
    scores = torch.randn(6, 4, generator=torch.Generator().manual_seed(0)).tanh()
    codes = sinkhorn_knopp(scores, epsilon=0.05, iterations=3)
    expected = torch.tensor(reference_sinkhorn(scores.tolist(), 0.05, 3))
    torch.testing.assert_close(codes, expected, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(codes.sum(dim=1), torch.ones(6))


def test_sinkhorn_codes_converge_to_the_equal_partition() -> None:
    """Rows (samples) sum to 1 and columns (prototypes) to B/K; 3 iterations already come close from scores
    that favour one prototype, which the raw softmax would give nearly every sample."""
    b, k = 32, 8
    scores = torch.rand(b, k, generator=torch.Generator().manual_seed(1)) * 0.5
    scores[:, 0] += 0.3  # prototype 0 is everyone's favourite
    for iterations, tolerance in ((3, 0.1), (50, 1e-5)):
        codes = sinkhorn_knopp(scores, 0.05, iterations)
        torch.testing.assert_close(codes.sum(dim=1), torch.ones(b))
        assert (codes.sum(dim=0) / (b / k) - 1).abs().max() < tolerance, iterations
    assert torch.softmax(scores / 0.05, dim=1).sum(dim=0)[0] > 0.6 * b  # without Sinkhorn: mostly one cluster


def test_swapped_prediction_is_the_cross_entropy_of_each_code_against_the_other_crops() -> None:
    g = torch.Generator().manual_seed(0)
    scores = [torch.randn(3, 4, generator=g, dtype=torch.float64) for _ in range(4)]
    codes = [torch.softmax(torch.randn(3, 4, generator=g, dtype=torch.float64), dim=1) for _ in range(2)]
    expected = 0.0
    for i, q in enumerate(codes):  # the authors' loop: per code, the mean over the other crops
        subloss = 0.0
        for v in [v for v in range(4) if v != i]:
            log_p = torch.log_softmax(scores[v] / 0.1, dim=1)
            subloss -= (q * log_p).sum(dim=1).mean().item()
        expected += subloss / 3
    expected /= 2
    assert swapped_prediction_loss(codes, scores, 0.1).item() == pytest.approx(expected, rel=1e-10)


def tiny_swav(**changes):
    torch.manual_seed(0)
    return build_method("swav", SPEC, **{**TINY_OPTIONS["swav"], **changes})


def test_codes_get_no_gradient() -> None:
    scores = [torch.randn(4, 5, requires_grad=True) for _ in range(3)]
    codes = [sinkhorn_knopp(s) for s in scores[:2]]
    assert not any(c.requires_grad for c in codes)
    codes = [c.requires_grad_() for c in codes]  # even targets that could take a gradient get none
    swapped_prediction_loss(codes, scores).backward()
    assert all(c.grad is None for c in codes) and all(s.grad.abs().sum() > 0 for s in scores)


def test_prototypes_are_normalised_before_each_step_and_frozen_for_the_first_steps() -> None:
    method = tiny_swav(freeze_prototypes_steps=1)
    with torch.no_grad():
        method.prototypes.weight.mul_(3.0)
    loss, _ = method.loss(noise_images(4))
    torch.testing.assert_close(method.prototypes.weight.norm(dim=1), torch.ones(10))
    loss.backward()
    assert method.prototypes.weight.grad is None  # the authors' p.grad = None: the optimizer skips it
    assert method.projector[0].weight.grad.abs().sum() > 0
    method.after_step(0.1)
    method.zero_grad(set_to_none=True)
    method.loss(noise_images(4))[0].backward()
    assert method.prototypes.weight.grad.abs().sum() > 0


def test_queue_shifts_in_the_newest_embeddings_and_is_used_once_full() -> None:
    method = tiny_swav(queue_length=12, queue_start_steps=1)
    images = noise_images(4)
    method.loss(images)
    assert int(method.queue_count) == 0 and method.queue.abs().sum() == 0  # step 0: not started
    method.after_step(0.1)
    first = torch.randn(2, 4, 8)
    for crop in range(2):
        method._enqueue(crop, first[crop])
    second = torch.randn(2, 4, 8)
    for crop in range(2):
        method._enqueue(crop, second[crop])
    torch.testing.assert_close(method.queue[:, :4], second)  # newest first
    torch.testing.assert_close(method.queue[:, 4:8], first)
    method.queue_count.fill_(8)
    _, metrics = method.loss(images)  # 8 + this batch's 4 fill the 12 slots, but only from the next step
    assert metrics["queue_in_use"] == 0.0 and int(method.queue_count) == 12
    _, metrics = method.loss(images)
    assert metrics["queue_in_use"] == 1.0


def test_codes_with_a_full_queue_are_sinkhorn_over_queue_and_batch() -> None:
    method = tiny_swav(queue_length=8)
    method.queue.copy_(torch.nn.functional.normalize(torch.randn(2, 8, 8), dim=2))
    method.queue_count.fill_(8)
    method.eval()  # no enqueue: the queue stays as set
    scores, embeddings = torch.randn(4, 10).tanh(), torch.randn(4, 8)
    codes = method.codes(1, scores, embeddings)
    queued = method.queue[1] @ method.prototypes.weight.T
    torch.testing.assert_close(codes, sinkhorn_knopp(torch.cat([queued, scores]))[-4:])


def test_a_queue_smaller_than_a_batch_is_an_error_that_says_what_to_do() -> None:
    method = tiny_swav(queue_length=2)
    with pytest.raises(SelfSupError, match="raise queue_length"):
        method.loss(noise_images(4))
