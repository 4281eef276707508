"""Contrastive and metric-learning losses: plain typed functions, tensors in, scalar out."""
from selfsup.losses.contrastive import info_nce, nt_xent

__all__ = ["info_nce", "nt_xent"]
