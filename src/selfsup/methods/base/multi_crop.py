"""The multi-crop family's shared part (SwAV, DINO): 2 global and several local crops of every image, the
contrastive encoder, crop features at every crop size, a step counter, `loss` -> `loss_from_crops`, and
`examples`.

Local crops are smaller than the image (12 px at 28x28, the papers' 96/224). The papers' encoders end in a
global average pool, so any crop size gives the same feature size; our ConvNet flattens its last 2x2 map
instead (that flat vector is what transfers). A local crop's smaller map is therefore average-pooled to the
grid a full-size image gives (a 12 px crop's 1x1 map is repeated over the 2x2 grid) before the encoder's
own pooling, so the heads take one input size; global crops go through the encoder unchanged, exactly as
downstream images do. An encoder without a spatial map (the ViT) takes only full-size crops.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import Method, MethodConfig
from selfsup.methods.base.two_view import contrastive_encoder_kwargs
from selfsup.views.basic import to_float
from selfsup.views.multicrop import CropGroup, local_crop_size, multi_crop

GLOBAL_CROPS = 2  # both papers; the targets (DINO's teacher, SwAV's codes) come from these two


@dataclass
class MultiCropConfig(MethodConfig):
    """Options every multi-crop method shares: the contrastive encoder and the local crops."""

    encoder_kwargs: dict = field(default_factory=contrastive_encoder_kwargs)
    local_crops: int = 6  # SwAV's 2x224 + 6x96; DINO's best ViT-S used 10 (its code's default: 8)
    local_size: int = 0  # 0: the papers' 96/224 of the image side (12 px at 28)


class MultiCropMethod(Method):
    """Two global and `local_crops` local crops of every image, one loss over them.

    A subclass sets `crop_groups(config, spec)` (the crops, global ones first, the paper's augmentations)
    and `loss_from_crops(crops)`, and builds its heads after `super().__init__` (so they draw their random
    init after the encoder). `steps_done` counts optimizer steps (`after_step`) for what the papers switch
    on or off after a number of steps; a subclass's `after_step` calls `super().after_step(progress)`.
    """

    Config: ClassVar[type[MethodConfig]] = MultiCropConfig
    default_epochs: ClassVar[int] = 20
    default_batch_size: ClassVar[int] = 256

    steps_done: Tensor

    def __init__(self, config: MultiCropConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = self.configured_encoder()
        self.groups = self.crop_groups(config, spec)
        self.register_buffer("steps_done", torch.zeros(1, dtype=torch.long))
        self.global_grid = self._global_grid() if any(g.size != spec.height for g in self.groups) else None

    def crop_groups(self, config: MultiCropConfig, spec: DataSpec) -> list[CropGroup]:
        raise NotImplementedError

    def local_size(self) -> int:
        """The configured local crop side, or the papers' 96/224 of the image side."""
        return self.config.local_size or local_crop_size(self.spec.height)

    def loss_from_crops(self, crops: list[Tensor]) -> tuple[Tensor, dict[str, Tensor | float]]:
        raise NotImplementedError

    # --- crops and their features --------------------------------------------------------------------
    def make_crops(self, batch: Tensor) -> list[Tensor]:
        """Every crop of every image of a uint8 batch, on its device: crop k of each image in tensor k."""
        return multi_crop(to_float(batch), self.groups)

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        return self.loss_from_crops(self.make_crops(batch))

    def crop_features(self, crops: list[Tensor], encoder: torch.nn.Module | None = None) -> list[Tensor]:
        """Features (N, D) of each crop; one encoder pass per run of same-size crops (the authors'
        MultiCropWrapper), so BatchNorm normalises the global and the local crops apart."""
        encoder = encoder or self.encoder
        features: list[Tensor] = []
        start = 0
        while start < len(crops):
            end = start
            while end < len(crops) and crops[end].shape[-1] == crops[start].shape[-1]:
                end += 1
            features.extend(self._features(encoder, torch.cat(crops[start:end])).chunk(end - start))
            start = end
        return features

    def _features(self, encoder: torch.nn.Module, x: Tensor) -> Tensor:
        if x.shape[-1] == self.spec.height:
            return encoder(x)  # full size: exactly the features that transfer
        feature_map, _ = encoder.feature_map(x)
        return encoder.pool(F.adaptive_avg_pool2d(feature_map, self.global_grid))

    def _global_grid(self) -> tuple[int, int]:
        """The spatial size of the encoder's last map for a full-size image; raises for encoders that have
        none (smaller crops need one)."""
        probe = torch.zeros(2, self.spec.channels, self.spec.height, self.spec.width)
        was_training = self.encoder.training
        self.encoder.eval()
        try:
            with torch.no_grad():
                feature_map = self.encoder.feature_map(probe)[0] if hasattr(self.encoder, "feature_map") else None
        finally:
            self.encoder.train(was_training)
        if feature_map is None or feature_map.dim() != 4:
            raise SelfSupError(f"encoder {self.config.encoder!r} has no spatial feature map for crops smaller than "
                               f"the image: set local_size={self.spec.height} (local crops at full size) or use "
                               "a convolutional encoder")
        return feature_map.shape[-2], feature_map.shape[-1]

    # --- the contract ---------------------------------------------------------------------------------
    def after_step(self, progress: float) -> None:
        self.steps_done += 1

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 8 images, both global crops and the first two local crops."""
        images = to_float(batch[:8])
        crops = self.make_crops(images)
        shown = {"images": images, "global_1": crops[0], "global_2": crops[1]}
        shown.update({f"local_{k + 1}": crop for k, crop in enumerate(crops[GLOBAL_CROPS:GLOBAL_CROPS + 2])})
        return shown
