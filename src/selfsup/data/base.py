"""The data contract: what every data source offers (`DataSource`), the spec a method is built for, and
in-memory images as uint8 tensors (N, C, H, W) plus labels."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch
from torch import Tensor

if TYPE_CHECKING:
    from selfsup.data.folder import Reading

# What `DataSource.batch` returns and a method's `loss` receives: uint8 images (B, C, H, W) or clips
# (B, T, C, H, W), or a dict of tensors (text: token ids and segments; ego-motion: frame pairs and motions).
Batch = Tensor | dict[str, Tensor]


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


@runtime_checkable
class DataSource(Protocol):
    """A data object held in memory: images (`ImageData`), text (`data.text.TextData`), clips
    (`data.sprites.VideoData`) or ego-motion view pairs (`data.egomotion.EgomotionData`).

    The trainer draws index batches with `batch`, the splits carve parts with `subset`, evaluation reads
    `labels` (int64 (N,), or None for unlabeled data) and `classes` (their names), and a method is built
    for `spec`.
    """

    labels: Tensor | None
    classes: list[str]
    name: str

    def __len__(self) -> int: ...

    @property
    def spec(self) -> DataSpec: ...

    def batch(self, index: Tensor) -> Batch:
        """The raw batch at `index`, on the CPU (the trainer moves it to the device)."""
        ...

    def subset(self, index: Tensor, name: str | None = None) -> DataSource:
        """The items at `index`, as a data object of the same kind (renamed `name` when given)."""
        ...


@dataclass
class ImageData:
    """Images as one uint8 tensor (N, C, H, W) in memory, with optional int64 labels (N,)."""

    images: Tensor
    labels: Tensor | None = None
    classes: list[str] = field(default_factory=list)
    name: str = "images"
    hflip_keeps_label: bool = True  # may supervised augmentation mirror an image? (clothes, photos: yes; digits: no)
    names: list[str] | None = None  # each image's file (relative to the folder read), for `selfsup embed`; None: no files

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels is not None and len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")
        if self.names is not None and len(self.names) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.names)} names")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def spec(self) -> DataSpec:
        _, c, h, w = self.images.shape
        return DataSpec("image", channels=c, height=h, width=w, num_classes=len(self.classes), size=len(self))

    def subset(self, index: Tensor, name: str | None = None) -> "ImageData":
        labels = None if self.labels is None else self.labels[index]
        names = None if self.names is None else [self.names[i] for i in positions(index, len(self)).tolist()]
        return replace(self, images=self.images[index], labels=labels, name=name or self.name, names=names)

    def batch(self, index: Tensor) -> Tensor:
        """The raw batch a method's `loss` receives: uint8 images at `index`."""
        return self.images[index]

    def labeled_batch(self, index: Tensor) -> tuple[Tensor, Tensor]:
        assert self.labels is not None, f"{self.name} has no labels"
        return self.images[index], self.labels[index]


def positions(index: Tensor, n: int) -> Tensor:
    """The positions (1-D int64) that `index` (positions or a boolean mask of length n) selects."""
    return torch.arange(n)[index].view(-1)


@dataclass
class DatasetSplits:
    """A source's own train and test parts (data objects of one kind: images, text, clips or ego-motion
    pairs); `test` is None when the source has no test split. `reading` says how a folder of the user's
    images was read (size, colour, skipped files), None for other sources."""

    train: DataSource
    test: DataSource | None
    reading: Reading | None = None
