"""The method contract: a plain nn.Module that turns a raw batch into a loss, usable in any loop.

A method
- builds its own views or pseudo-labels from the raw batch, on the batch's device, in `loss(batch)`;
- exposes `encoder`, the part that transfers downstream: float images in [0, 1] (N, C, H, W) -> (N, D)
  (text and video methods document their own input), with `feature_dim`;
- may update momentum encoders or queues in `after_step(progress)`, progress in [0, 1];
- may show what its task sees and predicts in `examples(batch)`: named image tensors in [0, 1];
- may train several players in turn (GANs): set `phases` and implement `phase_parameters(phase)` and
  `phase_loss(batch, phase)`; the trainer then keeps one optimizer per phase and steps them in order.

`TwoViewMethod` is the shared part of the methods that compare two random views of each image (SimCLR,
MoCo, BYOL, SimSiam): the encoder, the views, `loss` -> `loss_from_views`, `examples` and SyncBatchNorm.

No Lightning, file I/O or argument parsing here. Register with `@METHODS.register("name")`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import torch
from torch import Tensor, nn

from selfsup.config import make_config
from selfsup.data.base import DataSpec
from selfsup.distributed import maybe_sync_batchnorm
from selfsup.errors import SelfSupError
from selfsup.nets.registry import build_encoder
from selfsup.registry import Registry
from selfsup.views.augment import ViewConfig, two_views
from selfsup.views.basic import to_float

METHODS: Registry = Registry("method", "selfsup.methods")


@dataclass
class MethodConfig:
    """Options every method shares; a method's own Config subclasses this and may change defaults."""

    encoder: str = "convnet"
    encoder_kwargs: dict[str, Any] = field(default_factory=dict)  # extra encoder arguments, e.g. {"batch_norm": True}
    optimizer: str = "adam"  # adam | adamw | sgd
    lr: float = 1e-3
    weight_decay: float = 0.0
    momentum: float = 0.9  # SGD momentum
    betas: tuple[float, float] = (0.9, 0.999)  # Adam/AdamW
    schedule: str = "cosine"  # cosine | constant (after linear warm-up)
    warmup_epochs: float = 0.0

    def __post_init__(self) -> None:
        if self.encoder_kwargs is None:  # an explicit None (from Python or a config file) means "none"
            self.encoder_kwargs = {}


class Method(nn.Module):
    name: ClassVar[str] = "method"
    modality: ClassVar[str] = "image"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    phases: ClassVar[tuple[str, ...] | None] = None
    # What `selfsup pretrain NAME` and the benchmarks use when the user says nothing (scaled for 2 CPU cores).
    default_data: ClassVar[str] = "fashion-mnist"
    default_epochs: ClassVar[int] = 10
    default_batch_size: ClassVar[int] = 256

    encoder: nn.Module

    def __init__(self, config: MethodConfig, spec: DataSpec):
        super().__init__()
        self.config, self.spec = config, spec

    # --- the contract -------------------------------------------------------------------------
    def loss(self, batch: Any) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError

    def after_step(self, progress: float) -> None:
        """Called after each optimizer step; `progress` is the fraction of training done."""

    def examples(self, batch: Any) -> dict[str, Tensor]:
        return {}

    def phase_parameters(self, phase: str) -> Iterable[nn.Parameter]:
        raise NotImplementedError

    def phase_loss(self, batch: Any, phase: str) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError

    # --- shared helpers -----------------------------------------------------------------------
    def configured_encoder(self, in_channels: int | None = None) -> nn.Module:
        """The encoder named in the config, for this data's channels (or `in_channels`) and image size."""
        return build_encoder(self.config.encoder, in_channels=in_channels or self.spec.channels,
                             image_size=self.spec.height, **self.config.encoder_kwargs)

    def trainable_parameters(self) -> list[nn.Parameter]:
        """What the single optimizer trains: parameters that require grad (momentum copies do not)."""
        return [p for p in self.parameters() if p.requires_grad]

    def encoder_input(self, batch: Any) -> Any:
        """What `encoder` takes, from a raw downstream batch (uint8 images -> floats in [0, 1]).

        Override when the encoder sees a transformed input (e.g. the L channel of Lab colour), so that
        linear probes, kNN and fine-tuning all feed the encoder the way pretraining did.
        """
        return to_float(batch)

    @torch.no_grad()
    def features(self, batch: Any, upto: str | None = None) -> Tensor:
        """Frozen features for evaluation from a raw batch."""
        x = self.encoder_input(batch)
        return self.encoder(x, upto=upto) if upto else self.encoder(x)

    @property
    def feature_dim(self) -> int:
        return self.encoder.feature_dim()


def contrastive_encoder_kwargs() -> dict:
    """The two-view methods' encoder instead of the papers' ResNet-50: the ConvNet with BatchNorm, widths
    64-32-128."""
    return {"batch_norm": True, "widths": (64, 32, 128)}  # 512-d conv3 features, about RotNet's cost per image


@dataclass
class TwoViewConfig(MethodConfig):
    """Options every two-view method shares: the contrastive encoder by default."""

    encoder_kwargs: dict = field(default_factory=contrastive_encoder_kwargs)


class TwoViewMethod(Method):
    """Two random views of every image, one loss on the pair (SimCLR, MoCo, BYOL, SimSiam).

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


def build_method(name: str, spec: DataSpec, **overrides: Any) -> Method:
    """Build a registered method for data described by `spec`, overriding config fields by name
    (checked by `selfsup.config.make_config`, the path the CLI's `--set` takes too)."""
    cls = METHODS.get(name)
    config = make_config(cls.Config, overrides)
    if cls.modality != spec.modality:
        raise SelfSupError(f"method {name!r} works on {cls.modality} data, but the data is {spec.modality}")
    return cls(config, spec)

