"""BYOL: predict, from one view of an image, the target network's projection of another view.

Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning", NeurIPS 2020.
The online network (encoder, projector, predictor) regresses the normalised projection of the other view
made by a target network (encoder, projector) that gets no gradient and follows the online weights as an
exponential moving average, tau rising from 0.996 to 1 on a cosine schedule over training. The loss
2 - 2 cos(q, z') is symmetrised over the two views. No negatives.

Deviations (28x28 grayscale, 2 CPU cores):
- Adam lr 1e-3, weight decay 1e-6, instead of LARS lr 0.2 x batch/256 and weight decay 1.5e-6.
- Projector/predictor hidden width 512 instead of 4096, output 128 instead of 256 (a 512-d encoder).
- Views: `byol_views` (asymmetric blur 1.0 / 0.1 and solarise 0 / 0.2), crop (0.2, 1), 3x3 blur.
- Encoder: the ConvNet with BatchNorm, widths 64-32-128 (512-d), instead of ResNet-50.
- The EMA covers parameters; the target's BatchNorm running statistics come from its own forward passes.
- `sync_bn` (the paper syncs BatchNorm over its 512 TPU cores) converts BatchNorm when multi-process on
  GPUs; torch has no CPU SyncBatchNorm, so on CPU statistics stay per process.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.distributed import maybe_sync_batchnorm
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets import mlp
from selfsup.views.augment import byol_views, two_views
from selfsup.views.basic import to_float


def _contrastive_encoder_kwargs() -> dict:
    return {"batch_norm": True, "widths": (64, 32, 128)}  # 512-d conv3 features, about RotNet's cost per image


@dataclass
class BYOLConfig(MethodConfig):
    encoder_kwargs: dict = field(default_factory=_contrastive_encoder_kwargs)
    lr: float = 1e-3  # Adam; the paper: LARS 0.2 x batch/256
    weight_decay: float = 1e-6  # the paper: 1.5e-6
    base_tau: float = 0.996  # target EMA rate at the start; rises to 1 on a cosine
    hidden_dim: int = 512  # the paper: 4096
    projection_dim: int = 128  # the paper: 256
    sync_bn: bool = True


def cosine_tau(base_tau: float, progress: float) -> float:
    """tau = 1 - (1 - base_tau) (cos(pi * progress) + 1) / 2: base_tau at the start, 1 at the end."""
    return 1 - (1 - base_tau) * (math.cos(math.pi * progress) + 1) / 2


@torch.no_grad()
def ema_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """target <- tau * target + (1 - tau) * online, parameter by parameter."""
    for t, o in zip(target.parameters(), online.parameters()):
        t.mul_(tau).add_(o.detach(), alpha=1 - tau)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A copy that gets no gradient: only EMA updates move it."""
    twin = copy.deepcopy(module)
    for p in twin.parameters():
        p.requires_grad_(False)
    return twin


def regression_loss(prediction: Tensor, target: Tensor) -> Tensor:
    """2 - 2 cos(prediction, target) per sample, the squared distance of the normalised vectors."""
    return 2 - 2 * F.cosine_similarity(prediction, target.detach(), dim=-1)


@METHODS.register("byol")
class BYOL(Method):
    name = "byol"
    Config = BYOLConfig
    default_epochs = 20
    default_batch_size = 256

    def __init__(self, config: BYOLConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = self.configured_encoder()
        self.projector = mlp(self.encoder.feature_dim(), config.hidden_dim, config.projection_dim)
        self.predictor = mlp(config.projection_dim, config.hidden_dim, config.projection_dim)
        self.target_encoder = frozen_copy(self.encoder)
        self.target_projector = frozen_copy(self.projector)
        self.view_configs = byol_views()
        self.tau = config.base_tau
        self._sync_bn_checked = False

    def make_views(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        return two_views(to_float(batch), *self.view_configs)

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        return self.loss_from_views(*self.make_views(batch))

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        self._sync_batchnorm_once(view1.device)
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

    def _sync_batchnorm_once(self, device: torch.device) -> None:
        # The process group exists only once training starts, after the method was built.
        if self.config.sync_bn and not self._sync_bn_checked:
            self._sync_bn_checked = True
            for name in ("encoder", "projector", "predictor", "target_encoder", "target_projector"):
                setattr(self, name, maybe_sync_batchnorm(getattr(self, name), device))

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 8 images and their two (asymmetric) random views."""
        images = to_float(batch[:8])
        view1, view2 = self.make_views(images)
        return {"images": images, "view_1": view1, "view_2": view2}
