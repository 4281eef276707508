"""Frames of video batches: clips are uint8 (N, T, C, H, W), single frames (N, C, H, W)."""
from __future__ import annotations

from torch import Tensor


def first_frame_if_clip(batch: Tensor) -> Tensor:
    """Video methods are evaluated frame by frame: a clip batch (N, T, C, H, W) gives its first frames."""
    return batch[:, 0] if batch.dim() == 5 else batch
