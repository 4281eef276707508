"""An agent moving a camera window over large canvases of real images: frame pairs with motor signals.

After Jayaraman & Grauman, "Learning image representations tied to ego-motion", ICCV 2015, where a car's
(or a turntable's) recorded motor signals are grouped into a few discrete motion classes. Here a canvas
is a `grid` x `grid` mosaic of Fashion-MNIST images; the agent looks through a 28x28 window, then makes
one move: left, right, up, down (the window slides by `shift` pixels) or forward / backward (the view
zooms in / out by `zoom`, i.e. the window shrinks / grows about its centre). The continuous motor signal
(dx, dy, log zoom) is `centre of its class + jitter`; the motion class is the nearest class centre, as
the paper groups real motor readings by k-means. Both views come from one bilinear sampling of the
canvas (`grid_sample`), for all pairs at once, deterministic from the seed.

`batch(index)` is a dict: "frames" uint8 (B, 2, 1, 28, 28) (before, after) and "motion" int64 (B,).
`labels` are the class of the canvas tile under the first window's centre (for seeded splits).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DatasetSplits, DataSpec
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError

MOTIONS = ("left", "right", "up", "down", "forward", "backward")


def motion_centres(shift: float, zoom: float) -> Tensor:
    """(6, 3) motor signal (dx, dy, log zoom) of each motion class; dx > 0 moves the camera right."""
    z = math.log(zoom)
    return torch.tensor([[-shift, 0, 0], [shift, 0, 0], [0, -shift, 0], [0, shift, 0], [0, 0, z], [0, 0, -z]],
                        dtype=torch.float32)


@dataclass
class EgomotionData:
    """Pairs of views before/after one camera move, with the motion class and the raw motor signal."""

    frames: Tensor  # uint8 (N, 2, 1, S, S)
    motion: Tensor  # int64 (N,)
    motor: Tensor  # float (N, 3): dx, dy, log zoom
    labels: Tensor | None = None
    classes: list[str] = field(default_factory=list)
    motions: tuple[str, ...] = MOTIONS
    name: str = "egomotion"

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def spec(self) -> DataSpec:
        _, t, c, h, w = self.frames.shape
        return DataSpec("video", channels=c, height=h, width=w, frames=t, num_classes=len(self.classes),
                        extra={"motions": list(self.motions)})

    def subset(self, index: Tensor, name: str | None = None) -> "EgomotionData":
        labels = None if self.labels is None else self.labels[index]
        return replace(self, frames=self.frames[index], motion=self.motion[index], motor=self.motor[index],
                       labels=labels, name=name or self.name)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        return {"frames": self.frames[index], "motion": self.motion[index]}


def mosaics(images: Tensor, tiles: Tensor) -> Tensor:
    """Canvases (M, C, G*h, G*w) from `tiles` (M, G, G) indices into `images` (K, C, h, w)."""
    m, grid, _ = tiles.shape
    _, c, h, w = images.shape
    t = images[tiles.flatten()].view(m, grid, grid, c, h, w)
    return t.permute(0, 3, 1, 4, 2, 5).reshape(m, c, grid * h, grid * w)


def window_grid(centre: Tensor, scale: Tensor, size: int, canvas: int) -> Tensor:
    """grid_sample coordinates (N, S, S, 2) of an S x S window centred at `centre` (N, 2) as (y, x) in
    pixel units, each output pixel spanning `scale` canvas pixels. Pixel k's centre is at coordinate k."""
    offsets = (torch.arange(size, dtype=torch.float32) - (size - 1) / 2)  # (S,)
    ys = centre[:, 0, None] + offsets * scale[:, None]  # (N, S)
    xs = centre[:, 1, None] + offsets * scale[:, None]
    to_unit = lambda p: (2 * p + 1) / canvas - 1  # align_corners=False convention
    gy, gx = to_unit(ys)[:, :, None].expand(-1, -1, size), to_unit(xs)[:, None, :].expand(-1, size, -1)
    return torch.stack([gx, gy], dim=-1)


def look(canvases: Tensor, centre: Tensor, scale: Tensor, size: int) -> Tensor:
    """Bilinear views (N, C, S, S) in [0, 255] float of `canvases` (N, C, H, W)."""
    grid = window_grid(centre, scale, size, canvases.shape[-1])
    return F.grid_sample(canvases.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def make_egomotion_pairs(images: Tensor, labels: Tensor | None, num_pairs: int, *, classes: list[str] | None = None,
                         canvases: int = 500, grid: int = 4, size: int = 28, shift: float = 4.0,
                         zoom: float = 1.25, jitter: float = 0.0, seed: int = 0, chunk: int = 1024,
                         name: str = "egomotion") -> EgomotionData:
    """`num_pairs` (before, after) views over `canvases` mosaics of `grid` x `grid` of `images`.

    Defaults (ours; the paper used KITTI/SUN/NORB at 32x32 or larger): 4 pixel shifts, 1.25x zoom, no
    motor noise (`jitter` adds Gaussian noise of that many pixels / log-zoom units x 0.1 to the signal).
    """
    if images.shape[-1] != images.shape[-2]:
        raise SelfSupError("egomotion canvases need square tiles")
    g = torch.Generator().manual_seed(seed)
    tiles = torch.randint(len(images), (canvases, grid, grid), generator=g)
    board = grid * images.shape[-1]
    centres = motion_centres(shift, zoom)
    cls = torch.randint(len(MOTIONS), (num_pairs,), generator=g)
    noise = torch.randn(num_pairs, 3, generator=g) * jitter * torch.tensor([1.0, 1.0, 0.1])
    motor = centres[cls] + noise
    motion = torch.cdist(motor, centres).argmin(dim=1)  # group raw motor readings into motion classes
    # First window centre: far enough from the border that the moved (and grown) window stays inside.
    margin = (size / 2) * max(zoom, 1 / zoom) + shift + 3 * jitter + 1
    if board - 2 * margin <= 0:
        raise SelfSupError(f"canvas of {board} pixels is too small for {size}-pixel windows moving {shift} pixels")
    canvas_of = torch.randint(canvases, (num_pairs,), generator=g)
    start = margin + torch.rand(num_pairs, 2, generator=g) * (board - 2 * margin)
    start = start.floor() + ((size - 1) / 2) % 1  # window pixels land on canvas pixel centres: exact crops
    moved = start + motor[:, [1, 0]]  # (y, x) += (dy, dx)
    scale_after = torch.exp(-motor[:, 2])  # forward (log zoom > 0) magnifies: each view pixel spans less canvas
    before, after = [], []
    for part in torch.arange(num_pairs).split(chunk):
        canvas = mosaics(images, tiles[canvas_of[part]])
        before.append(look(canvas, start[part], torch.ones(len(part)), size))
        after.append(look(canvas, moved[part], scale_after[part], size))
    frames = torch.stack([torch.cat(before), torch.cat(after)], dim=1).round().clamp(0, 255).to(torch.uint8)
    pair_labels = None
    if labels is not None:
        tile = (start / images.shape[-1]).long().clamp(max=grid - 1)
        pair_labels = labels[tiles[canvas_of, tile[:, 0], tile[:, 1]]]
    return EgomotionData(frames, motion, motor, pair_labels, list(classes or []), MOTIONS, name)


@DATASETS.register("egomotion")
def egomotion() -> DatasetSplits:
    """20,000 train / 2,000 test view pairs over 4x4 mosaics of Fashion-MNIST train / test images."""
    from selfsup.data.sources import fashion_mnist
    parts = fashion_mnist()
    return DatasetSplits(
        make_egomotion_pairs(parts.train.images, parts.train.labels, 20000, classes=parts.train.classes,
                             seed=0, name="egomotion-train"),
        make_egomotion_pairs(parts.test.images, parts.test.labels, 2000, classes=parts.test.classes,
                             canvases=100, seed=1, name="egomotion-test"))
