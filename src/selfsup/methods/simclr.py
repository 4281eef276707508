"""SimCLR: predict which of the 2N augmented views in the batch comes from the same image as each view.

Chen, Kornblith, Norouzi & Hinton, "A Simple Framework for Contrastive Learning of Visual
Representations", ICML 2020. Two random views of every image go through a shared encoder and a 2-layer
MLP projection head (BatchNorm after both layers, ReLU after the first only, as in the authors' code and
lightly's SimCLRProjectionHead; the authors' output BatchNorm learns a scale only, ours a scale and a
shift, as lightly's); NT-Xent over the 2N views,
each anchor with 1 positive and 2N-2 negatives. The head is discarded after pretraining: `encoder` is what
transfers. Across processes the projections of every rank are gathered with gradients, so each anchor has
the negatives of the whole global batch (the paper's cross-replica negatives).

Deviations (28x28 grayscale, 2 CPU cores):
- Adam lr 1e-3 instead of LARS lr 0.3 x batch/256 (no LARS here); weight decay 1e-6 as in the paper.
- Temperature 0.5, the paper's CIFAR-10 value (0.1 was best for its ImageNet batch 4096).
- Views: crop scale (0.2, 1), no blur, no saturation/hue on grayscale (`selfsup.views.augment.simclr_views`).
- `head`: "mlp" (default, the paper's), "linear" or "none", for the paper's Figure 8 ablation.
- Encoder: the ConvNet with BatchNorm and widths 64-32-128 (512-d conv3 features) instead of ResNet-50;
  projection 512 -> 512 -> 128 (the paper: 2048 -> 2048 -> 128).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import unknown_name
from selfsup.distributed import gather_with_grad, is_distributed, rank
from selfsup.losses.contrastive import nt_xent
from selfsup.methods.base import METHODS
from selfsup.methods.base.two_view import TwoViewConfig, TwoViewMethod
from selfsup.nets import mlp
from selfsup.views.augment import view_preset


@dataclass
class SimCLRConfig(TwoViewConfig):
    lr: float = 1e-3  # Adam; the paper: LARS 0.3 x batch/256
    weight_decay: float = 1e-6
    temperature: float = 0.5  # the paper's CIFAR-10 value
    projection_dim: int = 128
    projection_hidden: int = 0  # 0: the encoder's feature dimension, as in the paper
    head: str = "mlp"  # mlp (the paper's default) | linear | none: the paper's Figure 8 ablation
    views: str = "simclr"  # a preset of selfsup.views.augment


def nt_xent_across_ranks(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent for this rank's 2n anchors against the 2M views of all ranks (M = n x world size).

    Keys are [all first views; all second views] in rank order, so this rank's anchor i of view 1 sits
    at key row rank*n + i and its positive at M + rank*n + i. Equals `nt_xent` in one process.
    """
    all_z1, all_z2 = gather_with_grad(z1), gather_with_grad(z2)
    n, m = len(z1), len(all_z1)
    anchors = F.normalize(torch.cat([z1, z2]), dim=1)  # (2n, D)
    keys = F.normalize(torch.cat([all_z1, all_z2]), dim=1)  # (2M, D)
    logits = anchors @ keys.T / temperature  # (2n, 2M)
    own = rank() * n + torch.arange(n, device=z1.device)
    self_index = torch.cat([own, own + m])
    positive_index = torch.cat([own + m, own])
    logits = logits.scatter(1, self_index[:, None], float("-inf"))  # an anchor is not its own negative
    return F.cross_entropy(logits, positive_index)


def projection_head(config: SimCLRConfig, dim: int) -> nn.Module:
    """The paper's nonlinear head, its linear one (one layer, BatchNorm after it as in the authors' code), or
    none (NT-Xent on the encoder's features themselves)."""
    if config.head == "none":
        return nn.Identity()
    if config.head not in ("mlp", "linear"):
        raise unknown_name("SimCLR head", config.head, ["mlp", "linear", "none"])
    return mlp(dim, config.projection_hidden or dim, config.projection_dim, layers=2 if config.head == "mlp" else 1,
               last_batch_norm=True, last_affine=True)


@METHODS.register("simclr")
class SimCLR(TwoViewMethod):
    name = "simclr"
    Config = SimCLRConfig

    def __init__(self, config: SimCLRConfig, spec: DataSpec):
        super().__init__(config, spec, view_preset(config.views))
        self.projector = projection_head(config, self.encoder.feature_dim())

    def project(self, views: Tensor) -> Tensor:
        return self.projector(self.encoder(views))

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        # One encoder pass over both views: BatchNorm sees the 2N views together, as in the paper.
        z1, z2 = self.project(torch.cat([view1, view2])).chunk(2)
        if is_distributed():
            loss = nt_xent_across_ranks(z1, z2, self.config.temperature)
        else:
            loss = nt_xent(z1, z2, self.config.temperature)
        return loss, {"pretext_acc": positive_is_nearest(z1.detach(), z2.detach())}


def positive_is_nearest(z1: Tensor, z2: Tensor) -> Tensor:
    """Fraction of first views whose most similar second view is their own partner (top-1 of N)."""
    sim = F.normalize(z1, dim=1) @ F.normalize(z2, dim=1).T
    return (sim.argmax(1) == torch.arange(len(z1), device=z1.device)).float().mean()
