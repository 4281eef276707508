"""VICReg: the three terms against the paper's formulas written with loops, hand values, the method's loss on
its own embeddings with the weights 25/25/1, and gradients through both views."""
import math

import pytest
import torch
from torch import nn

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, fit_batch, synthetic_images
from selfsup.errors import SelfSupError
from selfsup.losses.redundancy import covariance_term, variance_term, vicreg_loss, vicreg_terms
from selfsup.methods.base import build_method

TINY = TINY_OPTIONS["vicreg"]


def reference_terms(z1: torch.Tensor, z2: torch.Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[float, ...]:
    """Bardes et al. 2022, eq. 1-5, with explicit sums: invariance = mean squared difference; variance = mean
    over dimensions of max(0, gamma - sqrt(unbiased var + eps)), averaged over the views (the authors' code);
    covariance = sum of squared off-diagonal covariances (divided by N - 1) over D, summed over the views."""
    n, d = z1.shape
    invariance = sum((float(z1[b, j]) - float(z2[b, j])) ** 2 for b in range(n) for j in range(d)) / (n * d)

    def column(z, j):
        return [float(z[b, j]) for b in range(n)]

    def cov(z, i, j):
        a, c = column(z, i), column(z, j)
        ma, mc = sum(a) / n, sum(c) / n
        return sum((a[b] - ma) * (c[b] - mc) for b in range(n)) / (n - 1)

    def var_term(z):
        return sum(max(0.0, gamma - math.sqrt(cov(z, j, j) + eps)) for j in range(d)) / d

    def cov_term(z):
        return sum(cov(z, i, j) ** 2 for i in range(d) for j in range(d) if i != j) / d
    return invariance, (var_term(z1) + var_term(z2)) / 2, cov_term(z1) + cov_term(z2)


def test_terms_and_loss_match_the_papers_formulas_written_with_loops() -> None:
    torch.manual_seed(0)
    z1 = torch.randn(7, 5, dtype=torch.float64) * torch.tensor([0.3, 0.8, 1.5, 2.0, 0.1], dtype=torch.float64)
    z2 = z1 + 0.5 * torch.randn(7, 5, dtype=torch.float64)  # some dimensions below std 1: the hinge is active
    expected = reference_terms(z1, z2)
    for term, value in zip(vicreg_terms(z1, z2), expected):
        assert term.item() == pytest.approx(value, rel=1e-10)
    inv, var, cov = expected
    assert vicreg_loss(z1, z2).item() == pytest.approx(25 * inv + 25 * var + cov, rel=1e-10)
    assert vicreg_loss(z1, z2, 1.0, 2.0, 3.0).item() == pytest.approx(inv + 2 * var + 3 * cov, rel=1e-10)


def test_hand_values_collapse_spread_and_duplicated_dimensions() -> None:
    collapsed = torch.ones(5, 3, dtype=torch.float64)  # every std is 0: the hinge is gamma - sqrt(eps) = 0.99
    assert variance_term(collapsed).item() == pytest.approx(0.99)
    assert covariance_term(collapsed).item() == 0
    spread = torch.tensor([[2.0, 0.0], [-2.0, 0.0], [0.0, 2.0], [0.0, -2.0]], dtype=torch.float64)
    assert variance_term(spread).item() == 0  # std sqrt(8/3) > 1 in both dimensions
    assert covariance_term(spread).item() == 0  # uncorrelated
    dup = spread[:, :1].repeat(1, 2)  # the same dimension twice: Cov_01 = Var = 8/3, counted twice, over D = 2
    assert covariance_term(dup).item() == pytest.approx(2 * (8 / 3) ** 2 / 2)


def test_method_loss_is_the_weighted_terms_of_its_embeddings_and_gradients_reach_both_views() -> None:
    torch.manual_seed(0)
    method = build_method("vicreg", SPEC, **TINY)
    assert (method.config.sim_coeff, method.config.std_coeff, method.config.cov_coeff) == (25.0, 25.0, 1.0)
    v1, v2 = (torch.rand(6, 1, 28, 28, requires_grad=True) for _ in range(2))
    loss, metrics = method.loss_from_views(v1, v2)
    z1, z2 = method.embed(v1).detach().double(), method.embed(v2).detach().double()
    inv, var, cov = reference_terms(z1, z2)
    assert loss.item() == pytest.approx(25 * inv + 25 * var + cov, rel=1e-4)
    assert [metrics[k].item() for k in ("invariance", "variance", "covariance")] == pytest.approx([inv, var, cov],
                                                                                                  rel=1e-4)
    loss.backward()  # no stop-gradient: both branches are trained
    assert v1.grad.abs().sum() > 0 and v2.grad.abs().sum() > 0


def test_expander_width_is_expander_dim() -> None:
    # The expander is BatchStatisticsMethod's projector, the one Barlow Twins' tests pin to the authors' code.
    assert build_method("vicreg", SPEC).config.expander_dim == 1024  # tuned: benchmarks/results/tuning.md
    method = build_method("vicreg", SPEC, **(TINY | {"expander_dim": 24}))
    assert [m.out_features for m in method.projector if isinstance(m, nn.Linear)] == [24, 24, 24]


def test_a_batch_of_one_is_refused() -> None:
    with pytest.raises(SelfSupError, match="at least 2"):
        vicreg_loss(torch.randn(1, 4), torch.randn(1, 4))


def test_training_lowers_the_loss_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    method = build_method("vicreg", SPEC, **TINY)
    losses, _ = fit_batch(method, synthetic_images(32).images, steps=20, lr=1e-2)
    assert min(losses[-3:]) < 0.9 * losses[0]  # about 21.6 -> 17.5
