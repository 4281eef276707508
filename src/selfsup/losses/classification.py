"""Classification losses of pretext tasks that predict a class per item, pixel or token.

Each returns what the method reports with it: the loss and, where the task has one true class, the
accuracy of the argmax prediction.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.views.text import IGNORE


def cross_entropy_and_accuracy(logits: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of logits (N, K) against class labels (N,), and the accuracy of their argmax."""
    return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).float().mean()


def soft_cross_entropy(logits: Tensor, targets: Tensor, dim: int = 1) -> Tensor:
    """-sum_q t_q log softmax(logits)_q along `dim`, per element, for soft targets that sum to 1 there
    (colorization's soft-encoded ab bins). No reduction: callers weight or average it."""
    return -(targets * F.log_softmax(logits, dim=dim)).sum(dim)


def masked_lm_loss(head: nn.Module, hidden: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy over chosen positions only (labels != IGNORE); logits are computed only there (BERT
    gathers them too), from the token states `hidden` (N, L, D) through the prediction `head`.

    Returns (loss, accuracy of the predictions at the chosen positions).
    """
    chosen = labels != IGNORE
    return cross_entropy_and_accuracy(head(hidden[chosen]), labels[chosen])
