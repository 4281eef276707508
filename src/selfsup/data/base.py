"""In-memory datasets: uint8 image tensors (N, C, H, W) plus labels, and the spec a method is built for."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import Tensor


@dataclass(frozen=True)
class DataSpec:
    """What a method needs to know about its input to build itself.

    Image data fills channels/height/width; video data also `frames`; text data `vocab_size` and
    `seq_len`. `num_classes` is the number of downstream classes when labels exist (else 0). `palette`
    lists the RGB colours in [0, 1] that objects are drawn in, when the source has a fixed set (the
    coloured sprites); methods that classify colours (tracking-colorization) read it from here.
    """

    modality: str = "image"
    channels: int = 1
    height: int = 28
    width: int = 28
    frames: int = 0
    vocab_size: int = 0
    seq_len: int = 0
    num_classes: int = 0
    size: int = 0  # number of items in the training data (e.g. MoCo scales its queue to it); 0 = unknown
    extra: dict = field(default_factory=dict)
    palette: tuple[tuple[float, float, float], ...] = ()  # empty: no fixed palette (and in runs saved before it)


@dataclass
class ImageData:
    """Images as one uint8 tensor (N, C, H, W) in memory, with optional int64 labels (N,)."""

    images: Tensor
    labels: Tensor | None = None
    classes: list[str] = field(default_factory=list)
    name: str = "images"
    hflip_keeps_label: bool = True  # may supervised augmentation mirror an image? (clothes, photos: yes; digits: no)

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def spec(self) -> DataSpec:
        _, c, h, w = self.images.shape
        return DataSpec("image", channels=c, height=h, width=w, num_classes=len(self.classes), size=len(self))

    def subset(self, index: Tensor, name: str | None = None) -> "ImageData":
        labels = None if self.labels is None else self.labels[index]
        return replace(self, images=self.images[index], labels=labels, name=name or self.name)

    def batch(self, index: Tensor) -> Tensor:
        """The raw batch a method's `loss` receives: uint8 images at `index`."""
        return self.images[index]

    def labeled_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        assert self.labels is not None, f"{self.name} has no labels"
        return self.images[index], self.labels[index]


@dataclass
class DatasetSplits:
    """A source's own train and test parts; `test` is None when the source has no test split."""

    train: ImageData
    test: ImageData | None
