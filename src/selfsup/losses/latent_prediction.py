"""I-JEPA's loss: regress predicted patch representations onto a target encoder's layer-normalised ones.

Assran et al., "Self-Supervised Learning from Images with a Joint-Embedding Predictive Architecture",
CVPR 2023. The paper writes the loss as the average L2 distance between predicted and target patch
representations; the authors' code (train.py) uses `smooth_l1_loss` (Huber, beta 1) on targets passed
through a LayerNorm without affine parameters, averaged over every value. Both are offered here.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from selfsup.errors import SelfSupError, unknown_name
from selfsup.losses.precision import float32

DISTANCES = ("smooth_l1", "mse")


@float32
def latent_prediction_loss(prediction: Tensor, target: Tensor, distance: str = "smooth_l1") -> Tensor:
    """Mean distance between `prediction` and the layer-normalised `target` (same shape, features last).

    The target gets no gradient: it comes from the EMA target encoder, which only its EMA moves.
    """
    if prediction.shape != target.shape:
        raise SelfSupError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
    target = F.layer_norm(target.detach(), target.shape[-1:])
    if distance == "smooth_l1":
        return F.smooth_l1_loss(prediction, target)
    if distance == "mse":
        return F.mse_loss(prediction, target)
    raise unknown_name("I-JEPA distance", distance, list(DISTANCES))
