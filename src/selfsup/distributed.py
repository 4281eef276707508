"""Multi-process helpers for contrastive methods: rank, world size, gathers that keep gradients, SyncBN.

Everything is a no-op in a single process (no `torch.distributed` process group, or a group of one), so
methods call these unconditionally. All gathers need the same batch size on every rank (all_gather's rule;
Lightning's DistributedSampler pads to equal sizes, use drop_last for the last batch).
"""
from __future__ import annotations

import warnings

import torch
import torch.distributed as dist
from torch import Tensor, nn


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


class _GatherWithGrad(torch.autograd.Function):
    """all_gather forward; backward sums every rank's gradient for the gathered tensor and returns this
    rank's slice, so each rank's inputs receive the gradient of every rank's loss through them."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        parts = [torch.empty_like(x) for _ in range(world_size())]
        dist.all_gather(parts, x.contiguous())
        return torch.cat(parts)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        n = grad.shape[0] // world_size()
        return grad[rank() * n:(rank() + 1) * n]


def gather_with_grad(x: Tensor) -> Tensor:
    """(N, ...) on each rank -> (world_size * N, ...) in rank order, differentiable w.r.t. this rank's x.

    With DDP averaging gradients over ranks and each rank's loss a mean over its own anchors, the
    gradients equal those of one process on the whole global batch (tests/test_distributed.py).
    """
    if not is_distributed():
        return x
    return _GatherWithGrad.apply(x)


@torch.no_grad()
def gather(x: Tensor) -> Tensor:
    """all_gather without gradient (MoCo's keys for the queue); identity in one process."""
    if not is_distributed():
        return x
    parts = [torch.empty_like(x) for _ in range(world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def all_reduce_sum(x: Tensor) -> Tensor:
    """The sum of every rank's x, on every rank (in place; no gradient): the global batch's statistics
    (DINO's centre, SwAV's Sinkhorn sums). Identity in one process."""
    if is_distributed():
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


@torch.no_grad()
def broadcast(x: Tensor, src: int = 0) -> Tensor:
    """Rank `src`'s tensor on every rank (in place); identity in one process."""
    if is_distributed():
        dist.broadcast(x, src=src)
    return x


@torch.no_grad()
def batch_shuffle(x: Tensor) -> tuple[Tensor, Tensor]:
    """Shuffle the global batch across processes (MoCo's shuffling BN, `_batch_shuffle_ddp` in the authors'
    builder.py): this process's part of a random permutation of every rank's x, and the inverse permutation
    for `batch_unshuffle`. Identity in one process (no random numbers drawn)."""
    if not is_distributed():
        return x, torch.arange(len(x), device=x.device)
    x_gather = gather(x)
    idx_shuffle = broadcast(torch.randperm(len(x_gather), device=x.device), src=0)
    return _this_ranks_rows(x_gather, idx_shuffle), torch.argsort(idx_shuffle)


@torch.no_grad()
def batch_unshuffle(x: Tensor, idx_unshuffle: Tensor) -> Tensor:
    """Undo `batch_shuffle` on its outputs: this process gets back the rows of its own inputs, in order."""
    if not is_distributed():
        return x
    return _this_ranks_rows(gather(x), idx_unshuffle)


def _this_ranks_rows(x_gather: Tensor, idx: Tensor) -> Tensor:
    """The rows of the gathered batch that `idx` (a global permutation) hands to this rank."""
    return x_gather[idx.view(world_size(), -1)[rank()]]


def maybe_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Convert BatchNorm layers to SyncBatchNorm when running multi-process on an accelerator.

    Parameters are kept (the same Parameter objects), so optimizers built earlier still train them.
    torch's SyncBatchNorm has no CPU kernel, so on CPU the module is returned unchanged with a warning.
    """
    if not is_distributed():
        return module
    if device.type == "cpu":
        warnings.warn("sync_bn: SyncBatchNorm does not run on CPU; BatchNorm statistics stay per process",
                      stacklevel=2)
        return module
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)
