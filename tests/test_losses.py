"""Each loss against a plain Python-loop reference on random inputs and hand-computed tiny cases."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from selfsup.errors import SelfSupError
from selfsup.losses import info_nce, nt_xent


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(a @ b / (a.norm() * b.norm()))


def _neg_log_softmax_first(values: list[float]) -> float:
    """-log(exp(v0) / sum exp(v)), written plainly."""
    return -math.log(math.exp(values[0]) / sum(math.exp(v) for v in values))


# --- InfoNCE -------------------------------------------------------------------------------------
def reference_info_nce(q, p, negatives, t, normalize=True):
    n = len(q)
    total = 0.0
    for i in range(n):
        sim = _cos if normalize else (lambda a, b: float(a @ b))
        if negatives is None:
            keys = [p[i]] + [p[j] for j in range(n) if j != i]
        elif negatives.dim() == 2:
            keys = [p[i]] + list(negatives)
        else:
            keys = [p[i]] + list(negatives[i])
        total += _neg_log_softmax_first([sim(q[i], k) / t for k in keys])
    return total / n


@pytest.mark.parametrize("kind", ["none", "shared", "per_query"])
@pytest.mark.parametrize("normalize", [True, False])
def test_info_nce_matches_loop_reference(kind, normalize):
    g = torch.Generator().manual_seed(0)
    q, p = torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g)
    negatives = {"none": None, "shared": torch.randn(7, 4, generator=g),
                 "per_query": torch.randn(5, 3, 4, generator=g)}[kind]
    got = info_nce(q, p, negatives, temperature=0.3, normalize=normalize)
    assert got.item() == pytest.approx(reference_info_nce(q, p, negatives, 0.3, normalize), rel=1e-5)


def test_info_nce_hand_computed():
    # q = e1, positive = e1 (cos 1), one negative = e2 (cos 0); t = 0.5 -> logits [2, 0].
    q, p, neg = torch.tensor([[1.0, 0.0]]), torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 3.0]])
    assert info_nce(q, p, neg, temperature=0.5).item() == pytest.approx(math.log(1 + math.exp(-2.0)), rel=1e-6)


def test_info_nce_gradients_reach_query_positive_and_negatives():
    q, p, neg = (torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True),
                 torch.randn(6, 3, requires_grad=True))
    info_nce(q, p, neg).backward()
    assert all(t.grad is not None and t.grad.abs().sum() > 0 for t in (q, p, neg))


def test_info_nce_rejects_mismatched_shapes():
    with pytest.raises(SelfSupError):
        info_nce(torch.randn(3, 4), torch.randn(2, 4))
    with pytest.raises(SelfSupError):
        info_nce(torch.randn(3, 4), torch.randn(3, 4), torch.randn(2, 5, 4))


# --- NT-Xent -------------------------------------------------------------------------------------
def reference_nt_xent(z1, z2, t):
    views = list(z1) + list(z2)
    n2 = len(views)
    total = 0.0
    for i in range(n2):
        partner = (i + n2 // 2) % n2
        others = [k for k in range(n2) if k not in (i, partner)]
        total += _neg_log_softmax_first([_cos(views[i], views[k]) / t for k in [partner] + others])
    return total / n2


def test_nt_xent_matches_loop_reference():
    g = torch.Generator().manual_seed(1)
    z1, z2 = torch.randn(6, 5, generator=g), torch.randn(6, 5, generator=g)
    assert nt_xent(z1, z2, 0.5).item() == pytest.approx(reference_nt_xent(z1, z2, 0.5), rel=1e-5)


def test_nt_xent_hand_computed():
    # Two images, orthogonal, views identical: each anchor has positive cos 1, negatives cos 0 (2N-2 = 2).
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    expected = -math.log(math.exp(1 / 0.5) / (math.exp(1 / 0.5) + 2 * math.exp(0.0)))
    assert nt_xent(z1, z1.clone(), 0.5).item() == pytest.approx(expected, rel=1e-6)


def test_nt_xent_is_symmetric_in_the_two_views():
    z1, z2 = torch.randn(4, 3), torch.randn(4, 3)
    assert nt_xent(z1, z2).item() == pytest.approx(nt_xent(z2, z1).item(), rel=1e-6)


def test_nt_xent_gradients_flow_to_both_views():
    z1, z2 = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    nt_xent(z1, z2).backward()
    assert z1.grad.abs().sum() > 0 and z2.grad.abs().sum() > 0
