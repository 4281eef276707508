"""SimSiam: predict, from one view of an image, the projection of another view, with a stop-gradient.

Chen & He, "Exploring Simple Siamese Representation Learning", CVPR 2021. A shared encoder and a 3-layer
projector (BatchNorm on every layer, the last one without affine parameters) embed both views; a 2-layer
bottleneck predictor maps one view's projection onto the other's, which is treated as a constant
(stop-gradient). Loss: -cos(p1, sg(z2)) / 2 - cos(p2, sg(z1)) / 2. No negatives, no momentum encoder:
the stop-gradient alone prevents collapse (metric `z_std`: per-dimension std of the normalised
projections, about 1/sqrt(dim) when healthy, 0 when collapsed).

Deviations (28x28 grayscale, 2 CPU cores):
- Projector width 512 (paper: 2048) with a 128-d predictor bottleneck (paper: 512), ratio 4 kept.
- SGD lr 0.05, momentum 0.9, weight decay 1e-4 as in the paper (batch 256), but the predictor's lr is not
  held fixed (the paper's "fix lr" for the predictor needs a per-group schedule the trainer lacks).
- Views: `mocov2_views` (the paper's recipe), crop (0.2, 1), 3x3 blur at 28x28, no saturation/hue on grayscale.
- Encoder: the ConvNet with BatchNorm, widths 64-32-128 (512-d), instead of ResNet-50.
- `sync_bn` converts BatchNorm when multi-process on GPUs; torch has no CPU SyncBatchNorm.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.losses.precision import float32
from selfsup.methods.base import METHODS
from selfsup.methods.base.two_view import TwoViewConfig, TwoViewMethod
from selfsup.nets import mlp
from selfsup.views.augment import mocov2_views


@dataclass
class SimSiamConfig(TwoViewConfig):
    optimizer: str = "sgd"
    lr: float = 0.05  # 0.05 x batch/256, batch 256
    weight_decay: float = 1e-4
    momentum: float = 0.9
    projection_dim: int = 512  # the paper: 2048
    predictor_dim: int = 128  # the paper: 512 (bottleneck of 1/4)
    sync_bn: bool = True


@float32
def negative_cosine(p: Tensor, z: Tensor) -> Tensor:
    """D(p, z) = -cos(p, stopgrad(z)), averaged over the batch; no gradient reaches z."""
    return -F.cosine_similarity(p, z.detach(), dim=-1).mean()


@METHODS.register("simsiam")
class SimSiam(TwoViewMethod):
    name = "simsiam"
    Config = SimSiamConfig
    sync_bn_modules = ("encoder", "projector", "predictor")

    def __init__(self, config: SimSiamConfig, spec: DataSpec):
        super().__init__(config, spec, mocov2_views())  # the paper's recipe
        dim = config.projection_dim
        self.projector = mlp(self.encoder.feature_dim(), dim, dim, layers=3, last_batch_norm=True)
        self.predictor = mlp(dim, config.predictor_dim, dim, layers=2)

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self.sync_batchnorm_once(view1.device)
        z1, z2 = self.projector(self.encoder(torch.cat([view1, view2]))).chunk(2)
        p1, p2 = self.predictor(torch.cat([z1, z2])).chunk(2)
        loss = negative_cosine(p1, z2) / 2 + negative_cosine(p2, z1) / 2
        return loss, {"z_std": F.normalize(z1.detach(), dim=1).std(0).mean()}
