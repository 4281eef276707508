"""Self-distillation over multi-crop views (DINO, Caron et al. 2021), and the cross-entropy over crop
pairs that DINO and SwAV share: plain functions, tensors in, scalar out.

A target distribution made from one crop of an image (DINO: the teacher's centred, sharpened output;
SwAV: a Sinkhorn code) is predicted from every *other* crop of the same image.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.distributed import all_reduce_sum, world_size
from selfsup.losses.precision import float32


@float32
def cross_entropy_over_crop_pairs(targets: Sequence[Tensor], logits: Sequence[Tensor], temperature: float) -> Tensor:
    """Mean over every pair (i, v) with v != i of H(targets[i], softmax(logits[v] / temperature)), each
    term averaged over the batch.

    targets[i]: (N, K) distributions made from crop i (no gradient flows into them); logits[v]: (N, K) the
    prediction from crop v. Crops are in the same order in both lists (the targets come from the first
    len(targets) crops), so v = i, a crop predicting itself, is skipped. Both papers' codes average
    the same pairs: DINO over all of them, SwAV per target crop and then over targets (equal counts).
    """
    log_probs = [F.log_softmax(x / temperature, dim=-1) for x in logits]
    terms = [-(q.detach() * log_p).sum(dim=-1).mean()
             for i, q in enumerate(targets) for v, log_p in enumerate(log_probs) if v != i]
    return torch.stack(terms).mean()


@float32
def dino_targets(teacher_logits: Sequence[Tensor], center: Tensor, temperature: float) -> list[Tensor]:
    """The teacher's distributions: centred (minus the EMA centre, against collapse to one dimension) and
    sharpened (a low temperature, against collapse to the uniform distribution). No gradient."""
    return [F.softmax((t.detach() - center) / temperature, dim=-1) for t in teacher_logits]


def dino_loss(student_logits: Sequence[Tensor], teacher_logits: Sequence[Tensor], center: Tensor,
              student_temperature: float = 0.1, teacher_temperature: float = 0.04) -> Tensor:
    """DINO's loss: the student's distribution of every crop predicts the teacher's distribution of every
    other global crop. student_logits: one (N, K) tensor per crop, global crops first; teacher_logits: one
    per global crop; center: (1, K)."""
    targets = dino_targets(teacher_logits, center, teacher_temperature)
    return cross_entropy_over_crop_pairs(targets, student_logits, student_temperature)


@torch.no_grad()
@float32
def updated_center(center: Tensor, teacher_logits: Tensor, momentum: float = 0.9) -> Tensor:
    """DINO's centre after a batch: momentum * center + (1 - momentum) * the mean teacher output over the
    global batch (every process's rows, all_reduce as in the authors' `update_center`).
    teacher_logits: (M, K), all global crops of this process's images; center: (1, K)."""
    batch_sum = all_reduce_sum(teacher_logits.sum(dim=0, keepdim=True))
    batch_center = batch_sum / (len(teacher_logits) * world_size())
    return center * momentum + batch_center * (1 - momentum)
