"""Contrastive, redundancy-reduction and metric-learning losses: plain typed functions, tensors in, scalar out."""
from selfsup.losses.clip import clip_loss
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
from selfsup.losses.nearest_neighbour import nnclr_loss
from selfsup.losses.redundancy import barlow_twins_loss, vicreg_loss

__all__ = [
    "barlow_twins_loss",
    "batch_triplet_loss",
    "clip_loss",
    "contrastive_loss",
    "info_nce",
    "lifted_structured_loss",
    "n_pair_loss",
    "nce_loss",
    "nnclr_loss",
    "nt_xent",
    "pairwise_distances",
    "soft_nearest_neighbor_loss",
    "triplet_loss",
    "vicreg_loss",
]
