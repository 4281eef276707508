"""Online clustering losses (SwAV, Caron et al. 2020): equal-partition codes by Sinkhorn-Knopp and the
swapped prediction of one crop's code from the other crops. Plain functions, tensors in, scalar out."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from selfsup.distributed import all_reduce_sum, world_size
from selfsup.losses.distillation import cross_entropy_over_crop_pairs
from selfsup.losses.precision import float32


@torch.no_grad()
@float32
def sinkhorn_knopp(scores: Tensor, epsilon: float = 0.05, iterations: int = 3) -> Tensor:
    """Soft codes (B, K) for scores (B, K) of B samples against K prototypes, spread equally over the
    prototypes (the authors' `distributed_sinkhorn`).

    Q = exp(scores / epsilon), then alternately each prototype's total is set to 1/K and each sample's to
    1/B; finally scaled by B so each sample's code sums to 1. Over the global batch: the totals are summed
    over every process (all_reduce), B counts every process's samples. After the last step every sample's
    code sums to exactly 1 and each prototype receives about B/K (exactly, as iterations grow). Scores are
    cosine similarities (|s| <= 1), so exp(s / 0.05) stays finite in float32. No gradient (codes are
    targets).
    """
    q = torch.exp(scores.float() / epsilon).T  # (K, B): the paper's notation
    k, b = q.shape[0], q.shape[1] * world_size()
    q /= all_reduce_sum(q.sum())
    for _ in range(iterations):
        q /= all_reduce_sum(q.sum(dim=1, keepdim=True))  # each prototype's total weight ...
        q /= k  # ... is 1/K
        q /= q.sum(dim=0, keepdim=True)  # each sample's total weight ...
        q /= b  # ... is 1/B
    return (q * b).T  # (B, K): each sample's code sums to 1


def swapped_prediction_loss(codes: Sequence[Tensor], scores: Sequence[Tensor], temperature: float = 0.1) -> Tensor:
    """SwAV's loss: the code of each assigned crop (codes[i], from crop i) is predicted from the prototype
    scores of every other crop, softmax(scores[v] / temperature), by cross-entropy; averaged over pairs."""
    return cross_entropy_over_crop_pairs(codes, scores, temperature)
