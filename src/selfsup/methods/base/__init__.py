"""The method contract: a plain nn.Module that turns a raw batch into a loss, usable in any loop.

A method
- builds its own views or pseudo-labels from the raw batch, on the batch's device, in `loss(batch)`;
- exposes `encoder`, the part that transfers downstream: float images in [0, 1] (N, C, H, W) -> (N, D)
  (text and video methods document their own input), with `feature_dim`;
- may update momentum encoders or queues in `after_step(progress)`, progress in [0, 1];
- may show what its task sees and predicts in `examples(batch)`: named image tensors in [0, 1];
- may train several players in turn (GANs): set `phases` and implement `phase_parameters(phase)` and
  `phase_loss(batch, phase)`; the trainer then keeps one optimizer per phase and steps them in order.

No Lightning, file I/O or argument parsing here. Register with `@METHODS.register("name")`.

Method files import only this package and the shared layers (`nets`, `views`, `losses`, `data.base`),
never each other (tests/test_layering.py checks it). What several methods share as a whole is a family
base in a module of this package, once:
- `two_view`: `TwoViewMethod`, two random views of each image and one loss on the pair (SimCLR, MoCo,
  BYOL, SimSiam, NNCLR), and `BatchStatisticsMethod`, a wide projector and a loss from statistics over the
  global batch (Barlow Twins, VICReg);
- `multi_crop`: `MultiCropMethod`, 2 global and several smaller local crops of each image, one loss over
  them (SwAV, DINO);
- `text`: `TextMethod` (a text Transformer that sees whole documents downstream), `SentencePairMethod`
  and `MaskedSentencePairMethod` (BERT's NSP/SOP, alone or with the masked LM on the pair input);
- `adversarial`: `AdversarialMethod`, a generator (encoder + decoder) and a discriminator trained in turn.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable

import torch
from torch import Tensor, nn

from selfsup.config import make_config
from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.nets.registry import build_encoder
from selfsup.registry import Registry
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


def build_method(name: str, spec: DataSpec, **overrides: Any) -> Method:
    """Build a registered method for data described by `spec`, overriding config fields by name
    (checked by `selfsup.config.make_config`, the path the CLI's `--set` takes too)."""
    cls = METHODS.get(name)
    config = make_config(cls.Config, overrides)
    if cls.modality != spec.modality:
        raise SelfSupError(f"method {name!r} works on {cls.modality} data, but the data is {spec.modality}")
    return cls(config, spec)
