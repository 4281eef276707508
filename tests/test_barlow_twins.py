"""Barlow Twins: the loss against the paper's formula written with loops, hand values, the method's loss on
its own embeddings, gradients through both views, and the projector of the authors' code."""
import math

import pytest
import torch
from torch import nn

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, fit_batch, noise_images, synthetic_images
from selfsup.errors import SelfSupError
from selfsup.losses.redundancy import barlow_twins_loss, cross_correlation, off_diagonal, standardize
from selfsup.methods.base import build_method

TINY = TINY_OPTIONS["barlow-twins"]


def reference_barlow_twins(z1: torch.Tensor, z2: torch.Tensor, lambd: float, eps: float = 1e-5) -> float:
    """Zbontar et al. 2021, eq. 1-2: standardise each dimension over the batch (biased variance, BatchNorm's
    eps), C_ij = sum_b z1n_bi z2n_bj / N, then sum_i (1 - C_ii)^2 + lambda sum_{i != j} C_ij^2."""
    n, d = z1.shape

    def standardised(z):
        out = [[0.0] * d for _ in range(n)]
        for j in range(d):
            mean = sum(float(z[b, j]) for b in range(n)) / n
            var = sum((float(z[b, j]) - mean) ** 2 for b in range(n)) / n
            for b in range(n):
                out[b][j] = (float(z[b, j]) - mean) / math.sqrt(var + eps)
        return out
    a, b_ = standardised(z1), standardised(z2)
    total = 0.0
    for i in range(d):
        for j in range(d):
            c_ij = sum(a[b][i] * b_[b][j] for b in range(n)) / n
            total += (1 - c_ij) ** 2 if i == j else lambd * c_ij ** 2
    return total


def test_loss_matches_the_papers_formula_written_with_loops() -> None:
    torch.manual_seed(0)
    z1, z2 = torch.randn(2, 7, 5, dtype=torch.float64)
    z2 = z2 + z1  # correlated views: neither term is trivial
    for lambd in (0.0051, 0.5):
        assert barlow_twins_loss(z1, z2, lambd).item() == pytest.approx(reference_barlow_twins(z1, z2, lambd), rel=1e-10)


def test_hand_values_identity_and_anti_correlated_views() -> None:
    # Two orthogonal +-1 columns: already standardised (variance 1), so C = I / sqrt(1 + eps)^2.
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]], dtype=torch.float64)
    scale = 1 / (1 + 1e-5)
    torch.testing.assert_close(cross_correlation(z, z), torch.eye(2, dtype=torch.float64) * scale)
    assert barlow_twins_loss(z, z).item() == pytest.approx(2 * (1 - scale) ** 2, abs=1e-15)  # ~0: the optimum
    assert barlow_twins_loss(z, -z).item() == pytest.approx(2 * (1 + scale) ** 2)  # C = -I: (1 - (-1))^2 per dim
    # A duplicated dimension: C_01 = C_10 = 1 costs lambda each.
    dup = torch.stack([z[:, 0], z[:, 0]], dim=1)
    assert barlow_twins_loss(dup, dup, lambd=0.25).item() == pytest.approx(2 * (1 - scale) ** 2 + 0.25 * 2 * scale ** 2)


def test_standardize_is_batchnorm_without_affine_in_training_mode() -> None:
    z = torch.randn(9, 6) * 3 + 2
    torch.testing.assert_close(standardize(z), nn.BatchNorm1d(6, affine=False).train()(z))
    assert off_diagonal(torch.arange(9.0).view(3, 3)).tolist() == [1, 2, 3, 5, 6, 7]


def test_method_loss_is_the_loss_of_its_embeddings_and_gradients_reach_both_views() -> None:
    torch.manual_seed(0)
    method = build_method("barlow-twins", SPEC, **TINY, lambd=0.1)
    v1, v2 = (torch.rand(6, 1, 28, 28, requires_grad=True) for _ in range(2))
    loss, metrics = method.loss_from_views(v1, v2)
    z1, z2 = method.embed(v1).detach(), method.embed(v2).detach()  # training-mode BatchNorm: the same outputs
    assert loss.item() == pytest.approx(reference_barlow_twins(z1.double(), z2.double(), 0.1), rel=1e-4)
    c = cross_correlation(z1, z2)
    torch.testing.assert_close(metrics["on_diag"], torch.diagonal(c).mean())
    torch.testing.assert_close(metrics["off_diag"], off_diagonal(c).pow(2).mean().sqrt())
    loss.backward()  # no stop-gradient: both branches are trained
    assert v1.grad.abs().sum() > 0 and v2.grad.abs().sum() > 0


def test_projector_is_the_authors_and_defaults_follow_the_paper() -> None:
    method = build_method("barlow-twins", SPEC)
    linears = [m for m in method.projector if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(512, 1024), (1024, 1024), (1024, 1024)]  # tuned width
    assert all(m.bias is None for m in linears)  # before BatchNorm, and at the output (standardised away)
    assert sum(isinstance(m, nn.BatchNorm1d) for m in method.projector) == 2
    assert isinstance(method.projector[-1], nn.Linear)  # no BatchNorm/ReLU after the output layer
    assert method.config.lambd == 0.0051
    assert method.view_config[0].blur_p == 1.0 and method.view_config[1].solarize_p == 0.2  # byol_views
    loss, _ = method.loss(noise_images(8))
    assert torch.isfinite(loss)


def test_a_batch_of_one_or_mismatched_embeddings_is_refused() -> None:
    with pytest.raises(SelfSupError, match="at least 2"):
        barlow_twins_loss(torch.randn(1, 4), torch.randn(1, 4))
    with pytest.raises(SelfSupError, match="same shape"):
        barlow_twins_loss(torch.randn(3, 4), torch.randn(3, 5))


def test_training_decorrelates_the_embeddings_of_a_fixed_batch() -> None:
    torch.manual_seed(0)
    method = build_method("barlow-twins", SPEC, **TINY)
    losses, metrics = fit_batch(method, synthetic_images(32).images, steps=20, lr=1e-2)
    assert min(losses[-3:]) < losses[0] / 3  # about 12.5 -> 2.3
    assert float(metrics["on_diag"]) > 0.4  # the views' dimensions agree: about 0.6, from about 0.1 at random init
