"""Contrastive and metric-learning losses: plain typed functions, tensors in, scalar out."""
from selfsup.losses.contrastive import info_nce, nt_xent
from selfsup.losses.metric import (
    batch_triplet_loss,
    contrastive_loss,
    lifted_structured_loss,
    n_pair_loss,
    pairwise_distances,
    soft_nearest_neighbor_loss,
    triplet_loss,
)
from selfsup.losses.nce import nce_loss

__all__ = [
    "batch_triplet_loss",
    "contrastive_loss",
    "info_nce",
    "lifted_structured_loss",
    "n_pair_loss",
    "nce_loss",
    "nt_xent",
    "pairwise_distances",
    "soft_nearest_neighbor_loss",
    "triplet_loss",
]
