"""CLIP's symmetric contrastive loss over a batch of image-text pairs (Radford et al., 2021).

    logits = scale * normalize(image) @ normalize(text).T      # (N, N): image i against every caption
    loss   = (cross_entropy(logits, arange(N)) + cross_entropy(logits.T, arange(N))) / 2

the pseudocode of the paper's Figure 3. Across processes (DDP) each rank scores its own N images against the
captions of every rank and its own N captions against every rank's images, with gradients through the
gathered embeddings (`selfsup.distributed.gather_with_grad`), as open_clip's `ClipLoss(local_loss=True)`: with
DDP averaging gradients, this equals one process on the global batch (tests/test_clip.py).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.distributed import gather_with_grad, rank
from selfsup.losses.precision import float32

INIT_LOGIT_SCALE = math.log(1 / 0.07)  # the paper: temperature initialised to 0.07
MAX_LOGIT_SCALE = 100.0  # the paper: "clipped to prevent scaling the logits by more than 100"


def logit_scale_value(log_scale: Tensor, max_scale: float = MAX_LOGIT_SCALE) -> Tensor:
    """exp of the learned log scale, clamped at `max_scale` (no gradient pushes it higher there)."""
    return log_scale.exp().clamp(max=max_scale)


@float32
def clip_loss(image: Tensor, text: Tensor, scale: Tensor | float) -> Tensor:
    """Symmetric InfoNCE of image embeddings (N, D) against text embeddings (N, D); pair i is (image i, text i).

    `scale` multiplies the cosine similarities (the inverse temperature, e.g. `logit_scale_value(...)`).
    Embeddings need not be normalised: they are here. Multi-process: see the module docstring.
    """
    image, text = F.normalize(image, dim=-1), F.normalize(text, dim=-1)
    all_image, all_text = gather_with_grad(image), gather_with_grad(text)
    targets = rank() * len(image) + torch.arange(len(image), device=image.device)
    logits_per_image = scale * image @ all_text.T  # (n, M): this rank's images against every caption
    logits_per_text = scale * text @ all_image.T  # (n, M): this rank's captions against every image
    return (F.cross_entropy(logits_per_image, targets) + F.cross_entropy(logits_per_text, targets)) / 2
