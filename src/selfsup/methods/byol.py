"""BYOL: predict, from one view of an image, the target network's projection of another view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020.
The online network (encoder, projector, predictor) regresses the normalised projection of the other view
made by a target network (encoder, projector) that gets no gradient and follows the online weights as an
exponential moving average, tau rising from 0.996 to 1 on a cosine schedule over training. The loss
2 - 2 cos(q, z') is symmetrised over the two views. No negatives.

Deviations (28x28 grayscale, 2 CPU cores):
- Adam lr 3e-3 (tuned over 1e-3 and 3e-3 on validation: `benchmarks/results/tuning.md`), weight decay 1e-6,
  instead of LARS lr 0.2 x batch/256 and weight decay 1.5e-6.
- Projector/predictor hidden width 512 instead of 4096, output 128 instead of 256 (a 512-d encoder).
- Views: `byol_views` (asymmetric blur 1.0 / 0.1 and solarise 0 / 0.2), crop (0.2, 1), 3x3 blur.
- Encoder: the ConvNet with BatchNorm, widths 64-32-128 (512-d), instead of ResNet-50.
- The EMA covers parameters; the target's BatchNorm running statistics come from its own forward passes.
- `sync_bn` (the paper syncs BatchNorm over its 512 TPU cores) converts BatchNorm when multi-process on
  GPUs; torch has no CPU SyncBatchNorm, so on CPU statistics stay per process.
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
from selfsup.nets.momentum import cosine_tau, ema_update, frozen_copy
from selfsup.views.augment import byol_views


@dataclass
class BYOLConfig(TwoViewConfig):
    lr: float = 3e-3  # Adam, tuned (benchmarks/results/tuning.md); the paper: LARS 0.2 x batch/256
    weight_decay: float = 1e-6  # the paper: 1.5e-6
    base_tau: float = 0.996  # target EMA rate at the start; rises to 1 on a cosine
    hidden_dim: int = 512  # the paper: 4096
    projection_dim: int = 128  # the paper: 256
    sync_bn: bool = True


@float32
def regression_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """2 - 2 cos(prediction, target) per sample, the squared distance of the normalised vectors."""
    return 2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)


@METHODS.register("byol")
class BYOL(TwoViewMethod):
    name = "byol"
    Config = BYOLConfig
    sync_bn_modules = ("encoder", "projector", "predictor", "target_encoder", "target_projector")

    def __init__(self, config: BYOLConfig, spec: DataSpec):
        super().__init__(config, spec, byol_views())  # asymmetric: one augmentation per view
        self.projector = mlp(self.encoder.feature_dim(), config.hidden_dim, config.projection_dim)
        self.predictor = mlp(config.projection_dim, config.hidden_dim, config.projection_dim)
        self.target_encoder = frozen_copy(self.encoder)
        self.target_projector = frozen_copy(self.projector)
        self.tau = config.base_tau

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        self.sync_batchnorm_once(view1.device)
        both = torch.cat([view1, view2])
        q1, q2 = self.predictor(self.projector(self.encoder(both))).chunk(2)
        with torch.no_grad():
            z1, z2 = self.target_projector(self.target_encoder(both)).chunk(2)
        # Symmetric: view 1 predicts the target of view 2 and vice versa.
        loss = (regression_loss(q1, z2) + regression_loss(q2, z1)).mean()
        return loss, {"tau": self.tau, "target_std": F.normalize(z1, dim=1).std(0).mean()}

    def after_step(self, progress: float) -> None:
        self.tau = cosine_tau(self.config.base_tau, progress)
        ema_update(self.target_encoder, self.encoder, self.tau)
        ema_update(self.target_projector, self.projector, self.tau)
