"""MoCo v3's contrastive loss: InfoNCE of queries against the keys of the whole (global) batch, scaled by 2t.

Chen, Xie & He, "An Empirical Study of Training Self-Supervised Vision Transformers", ICCV 2021,
Algorithm 1: with L2-normalised queries q (N, D) and keys k (M, D) of the global batch (M = N x world size),
query i's positive is key `offset + i` (this process's slice) and the other M-1 keys are its negatives:

    ctr(q, k) = 2t * CrossEntropy(q k^T / t, offset + arange(N))

The factor 2t (the authors' code) keeps the gradient's scale independent of the temperature t.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError
from selfsup.losses.precision import float32


@float32
def scaled_info_nce(query: Tensor, keys: Tensor, temperature: float = 0.2, offset: int = 0) -> Tensor:
    """MoCo v3's ctr(q, k): `query` (N, D) against every row of `keys` (M, D), positives at rows offset..offset+N-1.

    Both are L2-normalised here; pass keys without gradient for MoCo v3's stop-gradient on the momentum side.
    """
    if query.dim() != 2 or keys.dim() != 2 or query.shape[1] != keys.shape[1]:
        raise SelfSupError(f"query and keys must be (N, D) and (M, D), got {tuple(query.shape)} and {tuple(keys.shape)}")
    if not 0 <= offset <= len(keys) - len(query):
        raise SelfSupError(f"the {len(query)} positives from row {offset} do not fit in {len(keys)} keys")
    logits = F.normalize(query, dim=1) @ F.normalize(keys, dim=1).T / temperature  # (N, M)
    labels = offset + torch.arange(len(query), device=query.device)
    return F.cross_entropy(logits, labels) * (2 * temperature)
