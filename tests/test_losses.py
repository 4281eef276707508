"""Each loss against a plain Python-loop reference on random inputs and hand-computed tiny cases."""
from __future__ import annotations

import math

import pytest
import torch

from selfsup.errors import SelfSupError
from selfsup.losses import (
    batch_triplet_loss,
    contrastive_loss,
    info_nce,
    lifted_structured_loss,
    n_pair_loss,
    nce_loss,
    nt_xent,
    pairwise_distances,
    soft_nearest_neighbor_loss,
    triplet_loss,
)


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


def test_info_nce_without_negatives_equals_in_batch_negatives_given_explicitly():
    # Row i's negatives are the other rows' positives: pass them per query and compare.
    g = torch.Generator().manual_seed(2)
    q, p = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    others = torch.stack([torch.cat([p[:i], p[i + 1:]]) for i in range(4)])  # (4, 3, 3)
    assert info_nce(q, p).item() == pytest.approx(info_nce(q, p, others).item(), rel=1e-6)


# --- pairwise distances --------------------------------------------------------------------------
def test_pairwise_distances_match_cdist_and_have_finite_gradient_at_zero():
    x = torch.randn(5, 3, requires_grad=True)
    assert torch.allclose(pairwise_distances(x), torch.cdist(x, x), atol=1e-5)
    assert torch.allclose(pairwise_distances(x, squared=True), torch.cdist(x, x) ** 2, atol=1e-5)
    pairwise_distances(x).sum().backward()
    assert torch.isfinite(x.grad).all()


# --- contrastive loss with margin ----------------------------------------------------------------
def reference_contrastive(x1, x2, similar, margin):
    total = 0.0
    for a, b, s in zip(x1, x2, similar):
        d = float((a - b).norm())
        total += 0.5 * d ** 2 if s else 0.5 * max(0.0, margin - d) ** 2
    return total / len(x1)


def test_contrastive_loss_matches_loop_reference():
    g = torch.Generator().manual_seed(3)
    x1, x2 = torch.randn(8, 3, generator=g) * 0.5, torch.randn(8, 3, generator=g) * 0.5
    similar = torch.tensor([1, 0, 1, 0, 0, 1, 1, 0], dtype=torch.bool)
    expected = reference_contrastive(x1, x2, similar, 1.5)
    assert contrastive_loss(x1, x2, similar, margin=1.5).item() == pytest.approx(expected, rel=1e-5)


def test_contrastive_loss_hand_computed():
    # similar pair at distance 5: 25/2; dissimilar pair at distance 0.5, margin 1: (0.5)^2 / 2.
    x1 = torch.zeros(2, 2)
    x2 = torch.tensor([[3.0, 4.0], [0.0, 0.5]])
    got = contrastive_loss(x1, x2, torch.tensor([True, False]), margin=1.0)
    assert got.item() == pytest.approx((12.5 + 0.125) / 2)


def test_contrastive_loss_symmetric_zero_and_differentiable():
    x1, x2 = torch.randn(6, 4), torch.randn(6, 4)
    similar = torch.tensor([True, False] * 3)
    assert contrastive_loss(x1, x2, similar).item() == pytest.approx(contrastive_loss(x2, x1, similar).item())
    # Identical similar pairs and dissimilar pairs farther than the margin cost nothing.
    far = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
    assert contrastive_loss(far, torch.tensor([[0.0, 0.0], [0.0, 0.0]]), torch.tensor([True, False])).item() == 0
    x1.requires_grad_(True)
    contrastive_loss(x1, x2, similar).backward()
    assert x1.grad.abs().sum() > 0


# --- triplet loss --------------------------------------------------------------------------------
def _dist(a, b, squared):
    d = float((a - b).pow(2).sum())
    return d if squared else math.sqrt(d)


def reference_batch_triplet(x, y, margin, mining, squared):
    n = len(x)
    if mining == "all":
        active = []
        for a in range(n):
            for p in range(n):
                for m in range(n):
                    if a != p and y[a] == y[p] and y[m] != y[a]:
                        value = _dist(x[a], x[p], squared) - _dist(x[a], x[m], squared) + margin
                        if value > 0:
                            active.append(value)
        return sum(active) / len(active) if active else 0.0
    per_anchor = []
    for a in range(n):
        positives = [_dist(x[a], x[p], squared) for p in range(n) if p != a and y[p] == y[a]]
        negatives = [_dist(x[a], x[m], squared) for m in range(n) if y[m] != y[a]]
        if positives and negatives:
            per_anchor.append(max(0.0, max(positives) - min(negatives) + margin))
    return sum(per_anchor) / len(per_anchor)


@pytest.mark.parametrize("mining", ["all", "hard"])
@pytest.mark.parametrize("squared", [True, False])
def test_batch_triplet_matches_loop_reference(mining, squared):
    g = torch.Generator().manual_seed(4)
    x, y = torch.randn(10, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 3])
    got = batch_triplet_loss(x, y, margin=0.5, mining=mining, squared=squared)
    assert got.item() == pytest.approx(reference_batch_triplet(x, y, 0.5, mining, squared), rel=1e-5)


def test_triplet_losses_hand_computed():
    # Given triplets, squared distances: max(0, 1 - 4 + 0.2) = 0 and max(0, 4 - 1 + 0.2) = 3.2.
    a, p, n = torch.zeros(2, 2), torch.tensor([[1.0, 0.0], [2.0, 0.0]]), torch.tensor([[0.0, 2.0], [1.0, 0.0]])
    assert triplet_loss(a, p, n, margin=0.2).item() == pytest.approx(1.6)
    # Points 0, 1 | 3, 4 on a line, margin 1.5, plain distances. Active batch-all triplets:
    # (a=1, p=0, n=2): 1 - 2 + 1.5 and (a=2, p=3, n=1): 1 - 2 + 1.5 -> mean 0.5.
    # Batch-hard: anchors 1 and 2 give 0.5, anchors 0 and 3 give max(0, 1 - 3 + 1.5) = 0 -> 0.25.
    x, y = torch.tensor([[0.0], [1.0], [3.0], [4.0]]), torch.tensor([0, 0, 1, 1])
    assert batch_triplet_loss(x, y, margin=1.5, mining="all", squared=False).item() == pytest.approx(0.5)
    assert batch_triplet_loss(x, y, margin=1.5, mining="hard", squared=False).item() == pytest.approx(0.25)


def test_batch_triplet_zero_when_classes_separated_and_gradients_flow():
    x = torch.tensor([[0.0], [0.1], [10.0], [10.1]], requires_grad=True)
    y = torch.tensor([0, 0, 1, 1])
    for mining in ("all", "hard"):
        assert batch_triplet_loss(x, y, mining=mining).item() == 0.0
    close = torch.tensor([[0.0], [1.0], [1.2], [2.0]], requires_grad=True)
    batch_triplet_loss(close, y, margin=1.0, mining="hard").backward()
    assert close.grad.abs().sum() > 0
    with pytest.raises(SelfSupError):
        batch_triplet_loss(x, y, mining="semi")


# --- lifted structured loss ----------------------------------------------------------------------
def reference_lifted(x, y, margin):
    n = len(x)
    total, pairs = 0.0, 0
    for i in range(n):
        for j in range(i + 1, n):
            if y[i] != y[j]:
                continue
            pairs += 1
            s = sum(math.exp(margin - _dist(x[i], x[k], False)) for k in range(n) if y[k] != y[i])
            s += sum(math.exp(margin - _dist(x[j], x[l], False)) for l in range(n) if y[l] != y[j])
            total += max(0.0, math.log(s) + _dist(x[i], x[j], False)) ** 2
    return total / (2 * pairs)


def test_lifted_structured_matches_loop_reference():
    g = torch.Generator().manual_seed(5)
    x, y = torch.randn(9, 3, generator=g), torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 3])
    assert lifted_structured_loss(x, y, 1.0).item() == pytest.approx(reference_lifted(x, y, 1.0), rel=1e-5)


def test_lifted_structured_hand_computed():
    # Points 0, 1 (class 0) and 3 (class 1): one positive pair, D = 1; negatives at 3 and 2.
    x, y = torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0, 0, 1])
    j = math.log(math.exp(1 - 3) + math.exp(1 - 2)) + 1
    assert lifted_structured_loss(x, y, margin=1.0).item() == pytest.approx(j ** 2 / 2, rel=1e-6)


def test_lifted_structured_permutation_invariant_zero_and_differentiable():
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(8, 3, generator=g), torch.tensor([0, 1, 0, 1, 2, 2, 3, 3])
    order = torch.randperm(8, generator=g)
    assert lifted_structured_loss(x[order], y[order]).item() == pytest.approx(lifted_structured_loss(x, y).item())
    separated = torch.tensor([[0.0], [0.0], [50.0], [50.0]])
    assert lifted_structured_loss(separated, torch.tensor([0, 0, 1, 1])).item() == 0.0
    x.requires_grad_(True)
    lifted_structured_loss(x, y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


# --- multi-class N-pair loss ---------------------------------------------------------------------
def reference_n_pair(anchors, positives, l2_reg):
    n = len(anchors)
    total = 0.0
    for i in range(n):
        own = float(anchors[i] @ positives[i])
        total += math.log(1 + sum(math.exp(float(anchors[i] @ positives[j]) - own) for j in range(n) if j != i))
    norms = [float(v @ v) for v in list(anchors) + list(positives)]
    return total / n + l2_reg * sum(norms) / len(norms)


def test_n_pair_matches_loop_reference_and_info_nce_without_normalisation():
    g = torch.Generator().manual_seed(7)
    a, p = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    assert n_pair_loss(a, p).item() == pytest.approx(reference_n_pair(a, p, 0.002), rel=1e-5)
    plain = info_nce(a, p, temperature=1.0, normalize=False)
    assert n_pair_loss(a, p, l2_reg=0.0).item() == pytest.approx(plain.item(), rel=1e-6)


def test_n_pair_hand_computed_and_differentiable():
    e = torch.eye(2)  # f_i . f+_i = 1, f_i . f+_j = 0: log(1 + e^-1); mean squared norm 1
    assert n_pair_loss(e, e, l2_reg=0.01).item() == pytest.approx(math.log(1 + math.exp(-1)) + 0.01, rel=1e-6)
    a = torch.randn(3, 2, requires_grad=True)
    n_pair_loss(a, torch.randn(3, 2)).backward()
    assert a.grad.abs().sum() > 0


# --- NCE -----------------------------------------------------------------------------------------
def reference_nce(model_data, noise_data, model_noise, noise_noise):
    nu = len(model_noise) / len(model_data)
    sigmoid = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    total = sum(math.log(sigmoid(float(m - n) - math.log(nu))) for m, n in zip(model_data, noise_data))
    total += sum(math.log(1 - sigmoid(float(m - n) - math.log(nu))) for m, n in zip(model_noise, noise_noise))
    return -total / len(model_data)


def test_nce_matches_loop_reference_and_accepts_per_point_noise():
    g = torch.Generator().manual_seed(8)
    md, nd, mn, nn_ = (torch.randn(5, generator=g), torch.randn(5, generator=g),
                       torch.randn(15, generator=g), torch.randn(15, generator=g))
    assert nce_loss(md, nd, mn, nn_).item() == pytest.approx(reference_nce(md, nd, mn, nn_), rel=1e-5)
    assert nce_loss(md, nd, mn.view(5, 3), nn_.view(5, 3)).item() == pytest.approx(nce_loss(md, nd, mn, nn_).item())


def test_nce_hand_computed_when_model_equals_noise():
    zeros = torch.zeros(4)
    assert nce_loss(zeros, zeros, zeros, zeros).item() == pytest.approx(2 * math.log(2))  # nu = 1, h = 1/2
    # nu = 2: h = sigmoid(-log 2) = 1/3, J = -(log(1/3) + 2 log(2/3)).
    expected = -(math.log(1 / 3) + 2 * math.log(2 / 3))
    assert nce_loss(zeros, zeros, torch.zeros(8), torch.zeros(8)).item() == pytest.approx(expected, rel=1e-6)


def test_nce_recovers_mean_and_normaliser_of_a_gaussian():
    # Model log p_m(u) = -(u - mu)^2 / 2 + c, unnormalised: NCE must find mu = 1, c = -log(2 pi) / 2.
    g = torch.Generator().manual_seed(9)
    data = torch.randn(4000, generator=g) + 1.0
    noise = torch.randn(4000, generator=g) * 2.0
    noise_log_prob = lambda u: -(u / 2.0) ** 2 / 2 - math.log(2.0 * math.sqrt(2 * math.pi))  # noqa: E731
    mu, c = torch.zeros((), requires_grad=True), torch.zeros((), requires_grad=True)
    optimizer = torch.optim.LBFGS([mu, c], max_iter=100, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        model = lambda u: -(u - mu) ** 2 / 2 + c  # noqa: E731
        loss = nce_loss(model(data), noise_log_prob(data), model(noise), noise_log_prob(noise))
        loss.backward()
        return loss

    optimizer.step(closure)
    assert mu.item() == pytest.approx(1.0, abs=0.1)
    assert c.item() == pytest.approx(-0.5 * math.log(2 * math.pi), abs=0.1)


# --- soft nearest neighbour loss -----------------------------------------------------------------
def reference_snn(x, y, t):
    terms = []
    for i in range(len(x)):
        same = [math.exp(-_dist(x[i], x[j], True) / t) for j in range(len(x)) if j != i and y[j] == y[i]]
        if not same:
            continue
        everyone = [math.exp(-_dist(x[i], x[k], True) / t) for k in range(len(x)) if k != i]
        terms.append(-math.log(sum(same) / sum(everyone)))
    return sum(terms) / len(terms)


def test_soft_nearest_neighbor_matches_loop_reference():
    g = torch.Generator().manual_seed(10)
    x, y = torch.randn(9, 3, generator=g), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 3])  # class 3 has no partner
    got = soft_nearest_neighbor_loss(x, y, temperature=2.0)
    assert got.item() == pytest.approx(reference_snn(x, y, 2.0), rel=1e-5)


def test_soft_nearest_neighbor_hand_computed():
    x, y = torch.tensor([[0.0], [1.0], [3.0]]), torch.tensor([0, 0, 1])
    anchor0 = -math.log(math.exp(-1) / (math.exp(-1) + math.exp(-9)))
    anchor1 = -math.log(math.exp(-1) / (math.exp(-1) + math.exp(-4)))
    assert soft_nearest_neighbor_loss(x, y).item() == pytest.approx((anchor0 + anchor1) / 2, rel=1e-6)


def test_soft_nearest_neighbor_near_zero_when_separated_and_differentiable():
    separated = torch.tensor([[0.0], [0.1], [20.0], [20.1]])
    assert soft_nearest_neighbor_loss(separated, torch.tensor([0, 0, 1, 1])).item() == pytest.approx(0.0, abs=1e-6)
    x = torch.randn(6, 2, requires_grad=True)
    soft_nearest_neighbor_loss(x, torch.tensor([0, 0, 1, 1, 2, 2])).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(SelfSupError):
        soft_nearest_neighbor_loss(x, torch.tensor([0, 1, 2, 3, 4, 5]))
