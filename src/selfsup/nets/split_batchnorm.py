"""BatchNorm that, when asked, normalises a training batch in independent groups, as if on several devices.

MoCo in one process uses it to emulate the per-GPU BatchNorm of the authors' 8-GPU runs (their CIFAR-10
demo's `SplitBatchNorm` does the same): each group of the batch gets its own batch statistics, so the
key encoder's groups can be made to differ from the query encoder's (see methods/moco.py): `shuffle_groups`
permutes the keys' batch so that (`key_shuffle`) no key group is a query group.

`SplitBatchNorm2d` is an `nn.BatchNorm2d` with the same parameters, buffers and state_dict keys. It splits
only in training mode and only while `num_splits > 1`, which `batchnorm_splits` sets for the duration of a
`with` block; otherwise (eval mode, downstream fine-tuning, a checkpoint loaded into a plain encoder) it
computes exactly what `nn.BatchNorm2d` computes.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


class _GroupBatchNorm(torch.autograd.Function):
    """Training-mode BatchNorm of each of `groups` consecutive parts of x with its own statistics, by the
    native kernels, each part written into one output (`torch.cat` of `F.batch_norm` per part computes the
    same, but its split/cat backward made a MoCo step 1.35x slower than plain BatchNorm on CPU; this 1.1x).
    `running_means`, `running_vars`: (groups, C), one row per part, updated in place (or None)."""

    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor | None, bias: Tensor | None, running_means: Tensor | None,
                running_vars: Tensor | None, groups: int, momentum: float, eps: float) -> Tensor:
        out = torch.empty_like(x)
        saved = []
        for i, (part, out_part) in enumerate(zip(x.tensor_split(groups), out.tensor_split(groups))):
            rm = None if running_means is None else running_means[i]
            rv = None if running_vars is None else running_vars[i]
            y, mean, invstd = torch.native_batch_norm(part, weight, bias, rm, rv, True, momentum, eps)
            out_part.copy_(y)
            saved += [mean, invstd]
        ctx.save_for_backward(x, weight, *saved)
        ctx.groups, ctx.eps, ctx.affine = groups, eps, weight is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        x, weight, *saved = ctx.saved_tensors
        grad_x = torch.empty_like(x)
        grad_weight = grad_bias = None
        parts = zip(x.tensor_split(ctx.groups), grad_out.tensor_split(ctx.groups), grad_x.tensor_split(ctx.groups))
        for i, (part, grad_part, grad_x_part) in enumerate(parts):
            gx, gw, gb = torch.ops.aten.native_batch_norm_backward(
                grad_part, part, weight, None, None, saved[2 * i], saved[2 * i + 1], True, ctx.eps,
                [True, ctx.affine, ctx.affine])
            grad_x_part.copy_(gx)
            if ctx.affine:
                grad_weight = gw if grad_weight is None else grad_weight + gw
                grad_bias = gb if grad_bias is None else grad_bias + gb
        return grad_x, grad_weight, grad_bias, None, None, None, None, None


class SplitBatchNorm2d(nn.BatchNorm2d):
    """`nn.BatchNorm2d` that, in training mode with `num_splits` > 1, normalises the batch in `num_splits`
    consecutive groups (`Tensor.tensor_split`: sizes differ by at most one), each with its own statistics.

    The running statistics move towards the mean over groups of the groups' statistics (each group's
    update applied to the same starting value, then averaged). Eval mode: plain BatchNorm2d.
    """

    num_splits: int = 1  # set per forward pass by `batchnorm_splits`; 1 = plain BatchNorm2d

    def forward(self, x: Tensor) -> Tensor:
        groups = min(self.num_splits, len(x))
        if not self.training or groups <= 1:
            return super().forward(x)
        factor = 0.0  # the running-average factor, as nn.BatchNorm2d computes it
        if self.track_running_stats and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
            factor = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        means = variances = None
        if self.running_mean is not None and self.running_var is not None:
            # (groups, C): one copy of the running statistics per group, each updated from the same start
            means, variances = self.running_mean.repeat(groups, 1), self.running_var.repeat(groups, 1)
        out = _GroupBatchNorm.apply(x, self.weight, self.bias, means, variances, groups, factor, self.eps)
        if means is not None:
            with torch.no_grad():
                self.running_mean.copy_(means.mean(0))
                self.running_var.copy_(variances.mean(0))
        return out


def use_split_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every `nn.BatchNorm2d` in `module` (in place) by a `SplitBatchNorm2d` holding the same
    Parameter and buffer objects, so optimizers and state_dict keys are unaffected. Returns `module`."""
    for name, child in module.named_children():
        if type(child) is nn.BatchNorm2d:
            split = SplitBatchNorm2d(child.num_features, child.eps, child.momentum, child.affine,
                                     child.track_running_stats)
            split.weight, split.bias = child.weight, child.bias
            split.running_mean, split.running_var = child.running_mean, child.running_var
            split.num_batches_tracked = child.num_batches_tracked
            split.train(child.training)
            setattr(module, name, split)
        else:
            use_split_batchnorm(child)
    return module


def has_split_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, SplitBatchNorm2d) for m in module.modules())


@contextmanager
def batchnorm_splits(module: nn.Module, num_splits: int) -> Iterator[None]:
    """Within the block, every `SplitBatchNorm2d` in `module` normalises training batches in `num_splits`
    groups; back to plain BatchNorm after it."""
    layers = [m for m in module.modules() if isinstance(m, SplitBatchNorm2d)]
    for layer in layers:
        layer.num_splits = num_splits
    try:
        yield
    finally:
        for layer in layers:
            layer.num_splits = 1


# --- shuffling BN in one process: which images a key encoder's BatchNorm group sees together ---------------
def key_shuffle(n: int, groups: int, device: torch.device | str = "cpu") -> Tensor:
    """A permutation of a batch of n images for the key encoder, whose BatchNorm groups are the consecutive
    `tensor_split(groups)` parts of the permuted batch, so that no key group is a query group.

    The query groups' images are dealt out in turn like cards (each group's images in random order, the
    groups in a random order, the larger ones first when n is no multiple of `groups`): consecutive images
    of one query group lie `groups` apart in the dealt order, so a key group of L images takes at most
    ceil(L / groups) from any query group. With n = 256 and 8 groups, 4 of the 32 images of a key's group
    come from its query's group (a uniform random permutation, as in the authors' CIFAR-10 demo, gives 4 on
    average, without a bound); with n <= groups^2 only the image itself.
    """
    parts = torch.arange(n).tensor_split(groups)  # the first n % groups parts are one image larger
    larger = n % groups
    order = torch.cat([torch.randperm(larger), larger + torch.randperm(groups - larger)])
    deal = torch.empty(n, dtype=torch.long)  # the position of each image in the dealt order
    for slot, g in enumerate(order.tolist()):
        members = parts[g][torch.randperm(len(parts[g]))]
        deal[members] = torch.arange(len(members)) * groups + slot  # round r, then the group's slot
    return torch.argsort(deal).to(device)


@torch.no_grad()
def shuffle_groups(x: Tensor, groups: int) -> tuple[Tensor, Tensor]:
    """x permuted by `key_shuffle` (for a network that normalises it in `groups` BatchNorm groups), and the
    inverse permutation that puts the network's outputs back in the order of x."""
    idx_shuffle = key_shuffle(len(x), groups, x.device)
    return x[idx_shuffle], torch.argsort(idx_shuffle)
