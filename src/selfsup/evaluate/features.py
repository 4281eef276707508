"""Frozen features from a method's encoder, over a whole data object, in eval mode."""
from __future__ import annotations

import torch
from torch import Tensor

from selfsup.data.base import DataSource
from selfsup.methods.base import Method
from selfsup.utils import move_to


@torch.no_grad()
def extract_features(method: Method, data: DataSource, upto: str | None = None, batch_size: int = 512,
                     device: torch.device | str | None = None) -> Tensor:
    """(N, D) float features of every item of `data`, via `method.features(data.batch(idx), upto)`."""
    device = torch.device(device) if device is not None else next(method.parameters()).device
    was_training = method.training
    method.eval()
    chunks = []
    for index in torch.arange(len(data)).split(batch_size):
        chunks.append(method.features(move_to(data.batch(index), device), upto=upto).float().cpu())
    method.train(was_training)
    return torch.cat(chunks)
