"""Video object segmentation by label propagation through learned attention, and its mask IoU.

The protocol of Vondrick et al., "Tracking Emerges by Colorizing Videos" (ECCV 2018): given the first
frame's object masks, every later frame's labels are the attention-weighted labels of a reference frame,
exactly as colours were copied during training, with no further training. Labels are one-hot over
{background, object 1, ..., object K}, area-pooled to the attention's resolution, copied, upsampled
bilinearly and arg-maxed. `reference="previous"` copies from the previous frame's (soft) prediction, as the
paper tracks over time; `reference="first"` always copies from the given first frame.

Scores are the region similarity J of DAVIS: per object and frame, |pred & true| / |pred | true|, counted
as 1 when the object is absent from both, averaged over the objects and frames 1..T-1. The trivial
baseline copies the first frame's masks to every frame.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable

import torch
import torch.nn.functional as F
from torch import Tensor

if TYPE_CHECKING:  # annotations only: importing this module stays as light as it was
    from selfsup.data.sprites import VideoData
    from selfsup.methods.base import Method

Attend = Callable[[Tensor, Tensor], Tensor]  # (reference (N, C, H, W), target (N, C, H, W)) -> (N, P_t, P_r)


def pool_labels(labels: Tensor, num_labels: int, size: tuple[int, int]) -> Tensor:
    """Label maps (N, H, W) -> soft labels (N, h*w, num_labels): the label fractions of each cell."""
    one_hot = F.one_hot(labels.long(), num_labels).permute(0, 3, 1, 2).float()
    return F.adaptive_avg_pool2d(one_hot, size).flatten(2).transpose(1, 2)


def unpool_labels(soft: Tensor, cell_size: tuple[int, int], size: tuple[int, int]) -> Tensor:
    """Soft labels (N, h*w, K) -> hard label maps (N, H, W), upsampled bilinearly then arg-maxed."""
    n, _, k = soft.shape
    grid = soft.transpose(1, 2).reshape(n, k, *cell_size)
    if tuple(cell_size) != tuple(size):
        grid = F.interpolate(grid, size=size, mode="bilinear", align_corners=False)
    return grid.argmax(dim=1)


def cell_grid(cells: int, size: tuple[int, int]) -> tuple[int, int]:
    """The (h, w) of `cells` attention positions over an image of `size` (same aspect ratio)."""
    stride = math.sqrt(size[0] * size[1] / cells)
    h, w = round(size[0] / stride), round(size[1] / stride)
    if h * w != cells:
        raise ValueError(f"{cells} attention cells do not tile a {size[0]}x{size[1]} frame")
    return h, w


@torch.no_grad()
def propagate_masks(attend: Attend, frames: Tensor, first_labels: Tensor, num_labels: int,
                    reference: str = "previous") -> Tensor:
    """Predicted label maps (N, T, H, W) for clips `frames` (N, T, C, H, W) from the first frame's labels.

    Frame 0 of the output is `first_labels` itself. `attend(reference_frames, target_frames)` gives the
    (N, P_target, P_reference) attention, rows summing to 1.
    """
    if reference not in ("previous", "first"):
        raise ValueError(f"reference must be 'previous' or 'first', got {reference!r}")
    size = tuple(frames.shape[-2:])
    predictions = [first_labels.long()]
    first_soft = soft = None
    for step in range(1, frames.shape[1]):  # in "previous" mode each frame needs the last: loop over time only
        source = 0 if reference == "first" else step - 1
        attention = attend(frames[:, source], frames[:, step])
        if first_soft is None:  # the attention's resolution is known once it has been computed
            cells = cell_grid(attention.shape[-1], size)
            first_soft = soft = pool_labels(first_labels, num_labels, cells)
        soft = attention @ (first_soft if reference == "first" else soft)
        predictions.append(unpool_labels(soft, cells, size))
    return torch.stack(predictions, dim=1)


def mask_iou(predicted: Tensor, truth: Tensor, num_labels: int) -> Tensor:
    """(N, T, num_labels - 1) IoU of each object (labels 1..K) per frame; 1 where both masks are empty."""
    objects = torch.arange(1, num_labels, device=truth.device).view(1, 1, -1, 1, 1)
    p, g = predicted.unsqueeze(2) == objects, truth.unsqueeze(2).long() == objects
    intersection = (p & g).flatten(3).sum(3).float()
    union = (p | g).flatten(3).sum(3).float()
    return torch.where(union > 0, intersection / union.clamp_min(1), torch.ones_like(union))


def copy_first_frame(first_labels: Tensor, frames: int) -> Tensor:
    """The trivial tracker: the first frame's labels repeated for all `frames` (N, T, H, W)."""
    return first_labels.long().unsqueeze(1).expand(-1, frames, -1, -1)


@torch.no_grad()
def tracking_iou(method: Method, video: VideoData, reference: str = "previous", batch_size: int = 32,
                 temperature: float | None = None) -> dict[str, float]:
    """Mean J over frames 1..T-1 of propagating `video`'s first-frame segmentation with `method.attention`,
    and the same for the copy-the-first-frame baseline. `video` is a VideoData with `segmentation`."""
    from selfsup.views import to_float
    was_training = method.training
    method.eval()
    device = next(method.parameters()).device
    num_labels = int(video.object_labels.shape[1]) + 1
    ious, baseline = [], []
    for index in torch.arange(len(video)).split(batch_size):
        frames = to_float(video.batch(index)).to(device)
        truth = video.segmentation[index].to(device)
        attend = lambda r, t: method.attention(r, t, temperature)
        predicted = propagate_masks(attend, frames, truth[:, 0], num_labels, reference)
        ious.append(mask_iou(predicted[:, 1:], truth[:, 1:], num_labels).cpu())
        baseline.append(mask_iou(copy_first_frame(truth[:, 0], truth.shape[1])[:, 1:], truth[:, 1:], num_labels).cpu())
    method.train(was_training)
    return {"iou": torch.cat(ious).mean().item(), "copy_first_iou": torch.cat(baseline).mean().item(),
            "reference": reference}
