"""A first-in first-out queue of embeddings kept as buffers: MoCo's queue of negative keys (He et al. 2020)
and NNCLR's support set of candidate positives (Dwibedi et al. 2021) are written the same way.

The queue is a (K, D) tensor and a one-element pointer, both registered buffers of the method (so they are
checkpointed and moved with it); `enqueue` overwrites the oldest rows with a batch, wrapping around the end,
so any batch size up to K fits (the authors' MoCo asserts K % batch == 0).
"""
from __future__ import annotations

import torch
from torch import Tensor

from selfsup.errors import SelfSupError


@torch.no_grad()
def enqueue(queue: Tensor, ptr: Tensor, rows: Tensor, size_option: str = "queue_size") -> None:
    """Write `rows` (B, D) over the oldest rows of `queue` (K, D) from `ptr` on and advance `ptr` (in place).

    `queue` may be a view (MoCo keeps its queue as (D, K) and passes its transpose). `size_option` names the
    option that sets K, for the error when a batch does not fit.
    """
    batch_size, size = rows.shape[0], queue.shape[0]
    if batch_size > size:
        raise SelfSupError(f"{size_option} {size} is smaller than the global batch {batch_size}: "
                           f"set {size_option} to at least the batch size times the number of processes")
    start = int(ptr)
    slots = (start + torch.arange(batch_size, device=rows.device)) % size
    queue[slots] = rows.to(queue.dtype)
    ptr[0] = (start + batch_size) % size
