"""Moving sprites: real Fashion-MNIST / MNIST objects moving on a canvas, with per-frame ground truth.

Each clip shows `objects` sprites (real images, resized to `sprite_size`) that start at random places,
move at constant random velocity and bounce off the canvas walls; later objects are drawn over earlier
ones (occlusion). Everything is generated for all clips at once in torch and is a pure function of the
seed. Per frame we keep the segmentation (0 = background, k = object k-1, visible pixels only), the
sprites' top-left positions, their classes and, for `colors=True`, one distinct palette colour per
object (pixel = grey intensity x colour, so the grey frame is exactly `rgb.amax(channel)`).

Datasets: "sprites" (grey, Fashion-MNIST), "sprites-color" (coloured objects, for tracking by
colourisation) and "sprites-mnist" (grey MNIST-5k digits). `object_frames(video)` turns clips into an
`ImageData` of object-centred frames with the object's class, for few-label frame classification.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DatasetSplits, DataSpec, ImageData
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError

# Six saturated colours (max component 1), so intensity x colour keeps the intensity in the max channel.
PALETTE = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0],
                        [1.0, 1.0, 0.0], [0.0, 1.0, 1.0], [1.0, 0.0, 1.0]])
ALPHA_THRESHOLD = 26  # sprite pixels of at least 10% intensity belong to the object (its mask)


@dataclass
class VideoData:
    """Clips as uint8 (N, T, C, H, W) plus ground truth; `batch(index)` gives the clips at `index`.

    `labels` (N,) is the class of object 0 (the bottom-most one), so seeded splits can stratify clips;
    `object_labels` (N, O) holds every object's class, `segmentation` (N, T, H, W) uint8 the visible
    object id + 1 per pixel (0 = background), `positions` (N, T, O, 2) the sprites' top-left (y, x),
    `object_colors` (N, O, 3) the colours when the clips are coloured, `object_areas` (N, O) the pixel
    count of each object's whole mask (unoccluded, always fully on the canvas).
    """

    clips: Tensor
    labels: Tensor | None = None
    classes: list[str] = field(default_factory=list)
    segmentation: Tensor | None = None
    positions: Tensor | None = None
    object_labels: Tensor | None = None
    object_colors: Tensor | None = None
    object_areas: Tensor | None = None
    sprite_size: int = 0
    name: str = "video"

    def __post_init__(self) -> None:
        if self.clips.dtype != torch.uint8 or self.clips.dim() != 5:
            raise ValueError(f"clips must be uint8 (N, T, C, H, W), got {self.clips.dtype} {tuple(self.clips.shape)}")

    def __len__(self) -> int:
        return len(self.clips)

    @property
    def spec(self) -> DataSpec:
        _, t, c, h, w = self.clips.shape
        palette = () if self.object_colors is None else tuple(tuple(rgb) for rgb in PALETTE.tolist())
        return DataSpec("video", channels=c, height=h, width=w, frames=t, num_classes=len(self.classes),
                        palette=palette)

    def subset(self, index: Tensor, name: str | None = None) -> "VideoData":
        def take(x: Tensor | None) -> Tensor | None:
            return None if x is None else x[index]
        return replace(self, clips=self.clips[index], labels=take(self.labels), segmentation=take(self.segmentation),
                       positions=take(self.positions), object_labels=take(self.object_labels),
                       object_colors=take(self.object_colors), object_areas=take(self.object_areas),
                       name=name or self.name)

    def batch(self, index: Tensor) -> Tensor:
        """The raw batch a video method's `loss` receives: uint8 clips (B, T, C, H, W)."""
        return self.clips[index]


# --- trajectories and rendering -----------------------------------------------------------------
def bounce(position: Tensor, limit: float) -> Tensor:
    """Fold free-flight positions into [0, limit] as if reflected by walls at 0 and `limit` (a triangle wave)."""
    period = position.remainder(2 * limit)
    return limit - (period - limit).abs()


def trajectories(num_clips: int, objects: int, frames: int, limit: int, min_speed: float, max_speed: float,
                 generator: torch.Generator) -> Tensor:
    """Integer top-left positions (N, T, O, 2) of sprites flying at constant velocity and bouncing."""
    start = torch.rand(num_clips, 1, objects, 2, generator=generator) * limit
    speed = min_speed + torch.rand(num_clips, 1, objects, 1, generator=generator) * (max_speed - min_speed)
    angle = torch.rand(num_clips, 1, objects, 1, generator=generator) * 2 * torch.pi
    velocity = speed * torch.cat([angle.sin(), angle.cos()], dim=-1)
    time = torch.arange(frames, dtype=torch.float32).view(1, frames, 1, 1)
    return bounce(start + velocity * time, float(limit)).round().long()


def placement(offsets: Tensor, size: int, canvas: int) -> Tensor:
    """One-hot matrices (..., canvas, size): row p picks sprite row p - offset, so P @ S pastes S at offset."""
    rows = torch.arange(canvas).view(-1, 1) - offsets[..., None, None]
    return (rows == torch.arange(size).view(1, -1)).float()


def render_layers(sprites: Tensor, positions: Tensor, canvas: int) -> Tensor:
    """Each sprite (N, O, S, S) pasted at its position (N, T, O, 2) on an empty canvas: (N, T, O, H, W).

    Pasting is Py @ S @ Px^T with one-hot placement matrices: exact, batched, and no per-sample loop.
    """
    size = sprites.shape[-1]
    rows = placement(positions[..., 0], size, canvas)  # (N, T, O, H, S)
    cols = placement(positions[..., 1], size, canvas)  # (N, T, O, W, S)
    return rows @ sprites.unsqueeze(1) @ cols.transpose(-1, -2)


def visible_segmentation(layers: Tensor) -> Tensor:
    """(N, T, H, W) uint8: id+1 of the top-most object covering each pixel (later objects on top), else 0."""
    segmentation = torch.zeros(layers.shape[:2] + layers.shape[3:], dtype=torch.uint8)
    for k in range(layers.shape[2]):  # a handful of depth layers, each a whole-batch op
        segmentation.masked_fill_(layers[:, :, k] >= ALPHA_THRESHOLD, k + 1)
    return segmentation


def composite(layers: Tensor, segmentation: Tensor, colors: Tensor | None) -> Tensor:
    """Frames (N, T, C, H, W) uint8: each pixel shows its visible object's intensity (x its colour)."""
    with_background = torch.cat([torch.zeros_like(layers[:, :, :1]), layers], dim=2)
    intensity = with_background.gather(2, segmentation.long().unsqueeze(2))  # (N, T, 1, H, W)
    if colors is None:
        return intensity.round().to(torch.uint8)
    palette = torch.cat([torch.zeros(len(colors), 1, 3), colors], dim=1)  # (N, 1 + O, 3), background black
    clip = torch.arange(len(colors)).view(-1, 1, 1, 1)
    tint = palette[clip, segmentation.long()].permute(0, 1, 4, 2, 3)  # (N, T, 3, H, W)
    return (intensity * tint).round().to(torch.uint8)


def resize_sprites(images: Tensor, size: int) -> Tensor:
    """uint8 (M, 1, h, w) -> float (M, size, size) in [0, 255], area-averaged like a camera would."""
    x = images.float()
    if x.shape[-1] != size:
        x = F.interpolate(x, size=(size, size), mode="area")
    return x[:, 0].round()


def make_sprite_clips(images: Tensor, labels: Tensor, num_clips: int, *, classes: list[str] | None = None,
                      frames: int = 8, canvas: int = 48, sprite_size: int = 20, objects: int = 2,
                      min_speed: float = 1.0, max_speed: float = 3.0, colors: bool = False, seed: int = 0,
                      chunk: int = 512, name: str = "sprites") -> VideoData:
    """`num_clips` clips of `objects` sprites cut from `images` (uint8 (M, 1, h, w)) with `labels` (M,).

    Scaled down for 2 CPU cores: 8 frames of 48x48 with two 20x20 objects (Moving-MNIST uses 20 frames
    of 64x64 with 28x28 digits). Speeds are in pixels per frame. Deterministic from `seed`.
    """
    if canvas <= sprite_size:
        raise SelfSupError(f"canvas ({canvas}) must be larger than the sprites ({sprite_size})")
    if colors and objects > len(PALETTE):
        raise SelfSupError(f"at most {len(PALETTE)} coloured objects per clip, got {objects}")
    g = torch.Generator().manual_seed(seed)
    which = torch.randint(len(images), (num_clips, objects), generator=g)
    positions = trajectories(num_clips, objects, frames, canvas - sprite_size, min_speed, max_speed, g)
    palette_index = torch.rand(num_clips, len(PALETTE), generator=g).argsort(dim=1)[:, :objects]
    object_colors = PALETTE[palette_index] if colors else None
    sprites = resize_sprites(images[which.flatten()], sprite_size).view(num_clips, objects, sprite_size, sprite_size)
    clips, segmentation = [], []
    for part in torch.arange(num_clips).split(chunk):  # bounded memory; each chunk is fully batched
        layers = render_layers(sprites[part], positions[part], canvas)
        seg = visible_segmentation(layers)
        clips.append(composite(layers, seg, None if object_colors is None else object_colors[part]))
        segmentation.append(seg)
    object_labels = labels[which]
    areas = (sprites >= ALPHA_THRESHOLD).flatten(2).sum(2)
    return VideoData(torch.cat(clips), object_labels[:, 0].clone(), list(classes or []), torch.cat(segmentation),
                     positions, object_labels, object_colors, areas, sprite_size, name)


# --- frame-level evaluation data -----------------------------------------------------------------
def crop_windows(frames: Tensor, top_left: Tensor, size: int) -> Tensor:
    """Windows (N, C, size, size) of `frames` (N, C, H, W) at integer `top_left` (N, 2), zeros outside."""
    h, w = frames.shape[-2:]
    rows = placement(-top_left[:, 0], h, size)  # (N, size, H): window row r reads frame row r + top
    cols = placement(-top_left[:, 1], w, size)
    return (rows.unsqueeze(1) @ frames.float() @ cols.transpose(-1, -2).unsqueeze(1)).round().to(torch.uint8)


def object_frames(video: VideoData, frames_per_object: int = 1, min_visible: float = 0.5, gray: bool = True,
                  seed: int = 0, name: str | None = None) -> ImageData:
    """Object-centred frames with the object's class: an ImageData for few-label frame classification.

    For every clip and object, `frames_per_object` random frames (seeded) are cropped to the canvas size
    around the object's centre (zero padding), keeping crops where at least `min_visible` of the object's
    full mask is visible (the rest are mostly occluded). `gray` turns colour clips into intensity.
    """
    if video.positions is None or video.object_labels is None or video.segmentation is None:
        raise SelfSupError(f"{video.name} has no per-object ground truth to crop objects from")
    n, t, c, h, w = video.clips.shape
    objects = video.object_labels.shape[1]
    g = torch.Generator().manual_seed(seed)
    time = torch.rand(n, objects, t, generator=g).argsort(dim=2)[..., :frames_per_object]  # (N, O, F)
    clip = torch.arange(n).view(n, 1, 1).expand_as(time).reshape(-1)
    obj = torch.arange(objects).view(1, objects, 1).expand_as(time).reshape(-1)
    time = time.reshape(-1)
    visible = (video.segmentation[clip, time] == (obj + 1).view(-1, 1, 1).to(torch.uint8)).flatten(1).sum(1)
    full = video.object_areas[clip, obj]
    keep = visible >= min_visible * full
    clip, obj, time = clip[keep], obj[keep], time[keep]
    centre = video.positions[clip, time, obj] + video.sprite_size // 2
    top_left = centre - torch.tensor([h // 2, w // 2])
    images = video.clips[clip, time]
    if gray and c == 3:
        images = images.amax(dim=1, keepdim=True)  # exact intensity: colours have max component 1
    crops = torch.cat([crop_windows(images[i], top_left[i], h) for i in torch.arange(len(clip)).split(1024)])
    return ImageData(crops, video.object_labels[clip, obj], list(video.classes), name=name or f"{video.name}-objects")


# --- registered datasets -------------------------------------------------------------------------
def _fashion_parts() -> tuple[ImageData, ImageData]:
    from selfsup.data.sources import fashion_mnist
    parts = fashion_mnist()
    return parts.train, parts.test


def _mnist_parts() -> tuple[ImageData, ImageData]:
    from selfsup.data.sources import mnist5k
    data = mnist5k().train
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data), generator=g)
    return data.subset(order[:4000], "mnist5k-train"), data.subset(order[4000:], "mnist5k-test")


def sprite_splits(source: str = "fashion", train_clips: int = 2000, test_clips: int = 400, colors: bool = False,
                  **kwargs) -> DatasetSplits:
    """Train clips from the source's train images, test clips from its test images (no object shared)."""
    train, test = _fashion_parts() if source == "fashion" else _mnist_parts()
    name = f"sprites-{source}" + ("-color" if colors else "")
    return DatasetSplits(
        make_sprite_clips(train.images, train.labels, train_clips, classes=train.classes, colors=colors, seed=0,
                          name=f"{name}-train", **kwargs),
        make_sprite_clips(test.images, test.labels, test_clips, classes=test.classes, colors=colors, seed=1,
                          name=f"{name}-test", **kwargs))


@DATASETS.register("sprites")
def sprites() -> DatasetSplits:
    """2,000 train / 400 test grey clips (8 x 48 x 48) of two moving Fashion-MNIST objects."""
    return sprite_splits("fashion")


@DATASETS.register("sprites-color")
def sprites_color() -> DatasetSplits:
    """As "sprites", each object tinted with its own palette colour (for tracking by colourisation)."""
    return sprite_splits("fashion", colors=True)


@DATASETS.register("sprites-mnist")
def sprites_mnist() -> DatasetSplits:
    """Grey clips of two moving MNIST-5k digits (4,000 source digits for train clips, 1,000 for test)."""
    return sprite_splits("mnist")
