"""Heads that sit on an encoder's features: MLP projection/prediction heads, BERT's token and pair
heads, and the real/fake discriminator of the adversarial pretext tasks."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mlp(in_dim: int, hidden_dim: int, out_dim: int, layers: int = 2, batch_norm: bool = True,
        last_batch_norm: bool = False, last_affine: bool = False, last_bias: bool = True) -> nn.Sequential:
    """`layers` linear layers with BatchNorm+ReLU between them (SimCLR/BYOL-style projection head).

    `last_batch_norm` adds a BatchNorm1d (no ReLU) after the output layer, with a learned scale and shift
    if `last_affine` (SimCLR's and lightly's heads) or none (SimSiam's projector). A Linear followed by
    BatchNorm has no bias: the normalisation would remove it. `last_bias=False` drops the output layer's bias
    too, for losses that centre every dimension over the batch (Barlow Twins, VICReg): they are blind to a
    shift, so such a bias would get no gradient.
    """
    mods: list[nn.Module] = []
    dims = [in_dim] + [hidden_dim] * (layers - 1) + [out_dim]
    for i in range(layers):
        last = i == layers - 1
        followed_by_bn = last_batch_norm if last else batch_norm
        bias = not followed_by_bn and (last_bias or not last)
        mods.append(nn.Linear(dims[i], dims[i + 1], bias=bias))
        if not last:
            if batch_norm:
                mods.append(nn.BatchNorm1d(dims[i + 1]))
            mods.append(nn.ReLU(inplace=True))
    if last_batch_norm:
        mods.append(nn.BatchNorm1d(out_dim, affine=last_affine))
    return nn.Sequential(*mods)


class MLMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, then logits through the tied token embeddings."""

    def __init__(self, dim: int, token_embedding: nn.Embedding):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.token_embedding = token_embedding  # shared, not copied: tied output weights
        self.bias = nn.Parameter(torch.zeros(token_embedding.num_embeddings))

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(self.transform(h), self.token_embedding.weight, self.bias)


class PairClassifier(nn.Module):
    """BERT's pooler (dense + tanh on the [CLS] state) and a 2-way linear classifier."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 2))

    def forward(self, hidden: Tensor) -> Tensor:
        return self.net(hidden[:, 0])


class Discriminator(nn.Module):
    """Image (N, C, S, S) -> one real/fake logit: two stride-2 convolutions with LeakyReLU(0.2), a linear."""

    def __init__(self, channels: int, image_size: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Flatten())
        self.logit = nn.Linear(2 * width * (image_size // 4) ** 2, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.logit(self.features(images)).squeeze(1)
