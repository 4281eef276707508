"""The two-view family's shared part (SimCLR, MoCo, BYOL, SimSiam, Barlow Twins, VICReg, NNCLR): the
contrastive encoder, two random views of every image, `loss` -> `loss_from_views`, `examples`, and SyncBatchNorm
once training starts; `BatchStatisticsMethod`, the part Barlow Twins and VICReg share: a wide projector and a
loss from statistics over the global batch of the two views' embeddings."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.distributed import gather_with_grad, maybe_sync_batchnorm
from selfsup.methods.base import Method, MethodConfig
from selfsup.nets import mlp
from selfsup.views.augment import ViewConfig, two_views
from selfsup.views.basic import to_float


def contrastive_encoder_kwargs() -> dict:
    """The two-view methods' encoder instead of the papers' ResNet-50: the ConvNet with BatchNorm, widths
    64-32-128."""
    return {"batch_norm": True, "widths": (64, 32, 128)}  # 512-d conv3 features, about RotNet's cost per image


@dataclass
class TwoViewConfig(MethodConfig):
    """Options every two-view method shares: the contrastive encoder by default."""

    encoder_kwargs: dict = field(default_factory=contrastive_encoder_kwargs)


class TwoViewMethod(Method):
    """Two random views of every image, one loss on the pair (SimCLR, MoCo, BYOL, SimSiam, NNCLR).

    `__init__` builds `encoder` first (so a subclass's heads draw their random init after it) and keeps
    `view_config`: one augmentation for both views, or a (first view's, second view's) pair. A subclass adds
    its heads and `loss_from_views(view1, view2)`; views are float images in [0, 1], (N, C, H, W) each.
    """

    Config: ClassVar[type[MethodConfig]] = TwoViewConfig
    default_epochs: ClassVar[int] = 20
    default_batch_size: ClassVar[int] = 256
    view_names: ClassVar[tuple[str, str]] = ("view_1", "view_2")  # what `examples` calls the two views
    # Modules whose BatchNorm becomes SyncBatchNorm when `config.sync_bn` (a field of the subclass's Config).
    sync_bn_modules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config: MethodConfig, spec: DataSpec,
                 view_config: ViewConfig | tuple[ViewConfig, ViewConfig]):
        super().__init__(config, spec)
        self.encoder = self.configured_encoder()
        self.view_config = view_config
        self._sync_bn_checked = False

    def make_views(self, batch: Tensor) -> tuple[Tensor, Tensor]:
        """Two independent random views of every image of a uint8 batch, on the batch's device."""
        configs = self.view_config if isinstance(self.view_config, tuple) else (self.view_config,)
        return two_views(to_float(batch), *configs)

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        return self.loss_from_views(*self.make_views(batch))

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 8 images and their two random views."""
        images = to_float(batch[:8])
        view1, view2 = self.make_views(images)
        first, second = self.view_names
        return {"images": images, first: view1, second: view2}

    def sync_batchnorm_once(self, device: torch.device) -> None:
        """Convert the BatchNorm of `sync_bn_modules` to SyncBatchNorm on the first call (a no-op in one
        process). Called from the loss: the process group exists only once training starts, after the
        method was built."""
        if self._sync_bn_checked or not self.sync_bn_modules or not getattr(self.config, "sync_bn", False):
            return
        self._sync_bn_checked = True
        for name in self.sync_bn_modules:
            setattr(self, name, maybe_sync_batchnorm(getattr(self, name), device))


class BatchStatisticsMethod(TwoViewMethod):
    """Two views, a wide projector, and a loss from statistics over the batch of the two views' embeddings
    (Barlow Twins' cross-correlation, VICReg's variance and covariance).

    The projector is the one of both papers' code: three linear layers, BatchNorm and ReLU between them, no
    bias on the output (these losses centre every dimension over the batch, so a bias would get no gradient).
    A subclass implements `loss_from_embeddings(z1, z2)` on the embeddings of the global batch: every process
    gathers every process's embeddings with gradients, so the statistics (and, after DDP averages the
    gradients, the update) equal those of one process on the whole batch.
    """

    sync_bn_modules = ("encoder", "projector")

    def __init__(self, config: MethodConfig, spec: DataSpec, view_config: ViewConfig | tuple[ViewConfig, ViewConfig],
                 width: int):
        super().__init__(config, spec, view_config)
        self.projector = mlp(self.encoder.feature_dim(), width, width, layers=3, last_bias=False)

    def embed(self, views: Tensor) -> Tensor:
        return self.projector(self.encoder(views))

    def loss_from_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        self.sync_batchnorm_once(view1.device)
        # One pass per view, as in both papers' code: BatchNorm statistics are each view's own.
        z1, z2 = self.embed(view1), self.embed(view2)
        return self.loss_from_embeddings(gather_with_grad(z1), gather_with_grad(z2))

    def loss_from_embeddings(self, z1: Tensor, z2: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError
