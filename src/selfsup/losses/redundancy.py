"""Redundancy reduction and variance-covariance regularisation: non-contrastive losses on two views'
embeddings, z1 and z2 (N, D), that prevent collapse with statistics over the batch instead of negatives.

Barlow Twins (Zbontar, Jing, Misra, LeCun & Deny, "Barlow Twins: Self-Supervised Learning via Redundancy
Reduction", ICML 2021): standardise every dimension over the batch, take the cross-correlation matrix
C = z1n^T z2n / N (D, D), and push it to the identity:

    L_BT = sum_i (1 - C_ii)^2 + lambda * sum_i sum_{j != i} C_ij^2

VICReg (Bardes, Ponce & LeCun, "VICReg: Variance-Invariance-Covariance Regularization for Self-Supervised
Learning", ICLR 2022), with S(x) = sqrt(Var(x) + eps) the per-dimension standard deviation over the batch
and Cov(Z) = (Z - mean)^T (Z - mean) / (N - 1):

    s(Z, Z') = 1/N sum_n ||z_n - z'_n||^2 / D            (invariance: the mean squared error)
    v(Z)     = 1/D sum_j max(0, gamma - S(z^j))            (variance: a hinge on every dimension's std)
    c(Z)     = 1/D sum_i sum_{j != i} Cov(Z)_ij^2           (covariance: decorrelate the dimensions)
    L_VIC    = lambda s(Z, Z') + mu (v(Z) + v(Z')) / 2 + nu (c(Z) + c(Z'))

The variance term is averaged over the two views as in the authors' code (main_vicreg.py), where the paper's
equation sums them: with the code's weights 25/25/1 that is what produced the paper's numbers.

Both losses need the whole batch: in several processes pass the embeddings gathered from every rank
(`selfsup.distributed.gather_with_grad`), so the statistics are those of the global batch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError
from selfsup.losses.precision import float32


def off_diagonal(matrix: Tensor) -> Tensor:
    """The D*(D-1) off-diagonal entries of a square (D, D) matrix, flattened."""
    d = matrix.shape[0]
    return matrix.flatten()[:-1].view(d - 1, d + 1)[:, 1:].flatten()  # drop every (D+1)-th entry: the diagonal


def standardize(z: Tensor, eps: float = 1e-5) -> Tensor:
    """Every dimension to mean 0 and variance 1 over the batch: BatchNorm1d without affine parameters in
    training mode (biased variance, eps 1e-5), the authors' `self.bn` before the cross-correlation."""
    return (z - z.mean(0)) / torch.sqrt(z.var(0, unbiased=False) + eps)


@float32
def cross_correlation(z1: Tensor, z2: Tensor) -> Tensor:
    """Barlow Twins' C (D, D): correlation over the batch between dimension i of z1 and dimension j of z2."""
    _check_batch(z1, z2)
    return standardize(z1).T @ standardize(z2) / len(z1)


def distance_to_identity(c: Tensor, lambd: float = 0.0051) -> Tensor:
    """sum_i (1 - C_ii)^2 + lambd * sum_{i != j} C_ij^2 of a cross-correlation matrix C (D, D)."""
    on_diag = (torch.diagonal(c) - 1).pow(2).sum()
    return on_diag + lambd * off_diagonal(c).pow(2).sum()


def barlow_twins_loss(z1: Tensor, z2: Tensor, lambd: float = 0.0051) -> Tensor:
    """Zbontar et al. 2021: the diagonal of the cross-correlation pushed to 1 (invariance), the off-diagonal
    to 0 with weight `lambd` (redundancy reduction). The default is the authors' code's (the paper: 5e-3)."""
    return distance_to_identity(cross_correlation(z1, z2), lambd)


def invariance_term(z1: Tensor, z2: Tensor) -> Tensor:
    """VICReg's s(Z, Z'): the mean squared error between the two views' embeddings."""
    return F.mse_loss(z1, z2)


def variance_term(z: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """VICReg's v(Z): the mean over dimensions of max(0, gamma - std), std over the batch (unbiased) with eps."""
    std = torch.sqrt(z.var(0) + eps)
    return F.relu(gamma - std).mean()


def covariance_term(z: Tensor) -> Tensor:
    """VICReg's c(Z): the squared off-diagonal entries of the covariance matrix, summed, divided by D."""
    centred = z - z.mean(0)
    cov = centred.T @ centred / (len(z) - 1)
    return off_diagonal(cov).pow(2).sum() / z.shape[1]


@float32
def vicreg_terms(z1: Tensor, z2: Tensor, gamma: float = 1.0, eps: float = 1e-4) -> tuple[Tensor, Tensor, Tensor]:
    """The unweighted invariance, variance (mean of the two views) and covariance (sum of the two views)."""
    _check_batch(z1, z2)
    variance = (variance_term(z1, gamma, eps) + variance_term(z2, gamma, eps)) / 2
    return invariance_term(z1, z2), variance, covariance_term(z1) + covariance_term(z2)


def vicreg_loss(z1: Tensor, z2: Tensor, sim_coeff: float = 25.0, std_coeff: float = 25.0, cov_coeff: float = 1.0,
                gamma: float = 1.0, eps: float = 1e-4) -> Tensor:
    """Bardes et al. 2022: lambda s + mu v + nu c with the paper's weights 25 / 25 / 1 (see the module docstring)."""
    invariance, variance, covariance = vicreg_terms(z1, z2, gamma, eps)
    return sim_coeff * invariance + std_coeff * variance + cov_coeff * covariance


def _check_batch(z1: Tensor, z2: Tensor) -> None:
    if z1.dim() != 2 or z1.shape != z2.shape:
        raise SelfSupError(f"z1 and z2 must both be (N, D) of the same shape, got {tuple(z1.shape)} and "
                           f"{tuple(z2.shape)}")
    if len(z1) < 2:
        raise SelfSupError(f"statistics over the batch need at least 2 samples, got {len(z1)}: use a larger batch size")
