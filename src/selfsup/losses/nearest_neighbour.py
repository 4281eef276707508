"""NNCLR's contrastive loss: the nearest neighbour of a view's embedding in a support set is the positive.

Dwibedi, Aytar, Tompson, Sermanet & Zisserman, "With a Little Help from My Friends: Nearest-Neighbor
Contrastive Learning of Visual Representations", ICCV 2021. With NN(z_i, Q) the support-set item nearest to
the first view's embedding z_i and p_k the prediction made from the second view of image k, all L2-normalised,
over the n images of the batch (eq. 2, with the prediction head on the second view):

    L_i = -log( exp(NN(z_i, Q).p_i / t) / sum_k exp(NN(z_i, Q).p_k / t) )

and the paper's symmetric term, the same logits read by column (each prediction against every neighbour):

    L'_i = -log( exp(NN(z_i, Q).p_i / t) / sum_k exp(NN(z_k, Q).p_i / t) )

The neighbours come from a support set and carry no gradient; only the predictions are trained through this
loss (and the embeddings through the predictions and the next lookups).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError
from selfsup.losses.precision import float32


@float32
def nnclr_loss(neighbours: Tensor, predictions: Tensor, temperature: float = 0.1,
               all_neighbours: Tensor | None = None, all_predictions: Tensor | None = None, first: int = 0) -> Tensor:
    """(L_i + L'_i) / 2 averaged over the rows of `neighbours` and `predictions` (n, D), row i of one the
    positive of row i of the other; the neighbours are detached.

    In several processes pass the global batch as `all_neighbours` / `all_predictions` (M, D), and `first`, the
    row where this process's n rows start in it: each row is then contrasted with the M items of every process,
    and the mean over processes of this loss equals the loss of one process on the whole batch.
    """
    if neighbours.dim() != 2 or neighbours.shape != predictions.shape:
        raise SelfSupError(f"neighbours and predictions must both be (N, D) of the same shape, got "
                           f"{tuple(neighbours.shape)} and {tuple(predictions.shape)}")
    neighbours = F.normalize(neighbours.detach(), dim=1)
    predictions = F.normalize(predictions, dim=1)
    keys_p = predictions if all_predictions is None else F.normalize(all_predictions, dim=1)
    keys_nn = neighbours if all_neighbours is None else F.normalize(all_neighbours.detach(), dim=1)
    positive = first + torch.arange(len(neighbours), device=neighbours.device)  # row i's positive among the keys
    by_row = F.cross_entropy(neighbours @ keys_p.T / temperature, positive)  # L_i: n x M
    by_column = F.cross_entropy(predictions @ keys_nn.T / temperature, positive)  # L'_i: n x M
    return (by_row + by_column) / 2
