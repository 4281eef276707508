"""Two CPU processes (gloo), each with half of a global batch, equal one process on the whole batch.

Checked for `gather_with_grad` itself, SimCLR (loss and DDP-averaged gradients), MoCo (loss,
gradients, and the queue after enqueueing the gathered keys, with shuffled BN's shuffle/unshuffle in the
path), Barlow Twins (the cross-correlation) and VICReg (variance and covariance) over the global batch, and
NNCLR (the contrast over the global batch and the support set filled with the gathered batch). BatchNorm
is replaced by Identity in both runs: per-process BN statistics legitimately differ from whole-batch ones
(SyncBatchNorm has no CPU kernel), and that is not what these tests are about.
Views are precomputed from a fixed generator so both runs see the same inputs. One spawn runs all checks.
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from conftest import GRAY_SPEC as SPEC, results_per_process, without_batchnorm
from selfsup.distributed import gather_with_grad, rank, world_size
from selfsup.methods.base import build_method

WORLD = 2
GLOBAL_BATCH = 8
TINY = {"encoder_kwargs": {"widths": (4, 4, 4), "batch_norm": False}}  # no BatchNorm: see the docstring


def _views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return torch.rand(GLOBAL_BATCH, 1, 28, 28, generator=g), torch.rand(GLOBAL_BATCH, 1, 28, 28, generator=g)


def _build(name: str, **options: object) -> nn.Module:
    torch.manual_seed(0)  # the same initial weights (and MoCo queue) in every process
    return without_batchnorm(build_method(name, SPEC, **TINY, **options))


def _step(method: nn.Module, view1: torch.Tensor, view2: torch.Tensor) -> dict:
    """One loss + backward; gradients averaged over processes as DDP does."""
    loss, _ = method.loss_from_views(view1, view2)
    loss.backward()
    grads = {}
    for name, p in method.named_parameters():
        if p.requires_grad:
            g = p.grad.clone()
            if dist.is_initialized():
                dist.all_reduce(g)
                g /= world_size()
            grads[name] = g
    out = {"loss": loss.detach(), "grads": grads}
    if hasattr(method, "queue"):
        out["queue"], out["queue_ptr"] = method.queue.clone(), method.queue_ptr.clone()
    return out


def _run_all(shard: slice) -> dict:
    v1, v2 = _views()
    results = {"simclr": _step(_build("simclr", temperature=0.5), v1[shard], v2[shard]),
               "mocov2": _step(_build("mocov2", dim=4, queue_size=16), v1[shard], v2[shard]),
               "barlow-twins": _step(_build("barlow-twins", projector_dim=8), v1[shard], v2[shard]),
               "vicreg": _step(_build("vicreg", expander_dim=8), v1[shard], v2[shard]),
               "nnclr": _step(_build("nnclr", hidden_dim=16, projection_dim=8, predictor_hidden_dim=16, support_size=16,
                                     temperature=0.01),  # sharp enough for gradients well above atol
                              v1[shard], v2[shard])}
    # gather_with_grad: rank r's x meets the same weights on every rank, so its gradient is the sum
    x = (torch.arange(3.0) + 10 * rank()).requires_grad_()
    weights = torch.arange(3.0 * world_size()) + 1
    (gather_with_grad(x) * weights).sum().backward()
    results["gathered_grad"] = x.grad.clone()
    return results


def test_two_processes_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    ranks = results_per_process(_run_all, tmp_path, GLOBAL_BATCH, WORLD)
    single = _run_all(slice(0, GLOBAL_BATCH))

    for name in ("simclr", "mocov2", "barlow-twins", "vicreg", "nnclr"):
        mean_loss = sum(r[name]["loss"] for r in ranks) / WORLD  # each rank's loss averages its own anchors
        torch.testing.assert_close(mean_loss, single[name]["loss"], atol=1e-5, rtol=1e-5)
        for param, grad in single[name]["grads"].items():
            for r in ranks:  # after all_reduce every rank holds the same averaged gradient
                torch.testing.assert_close(r[name]["grads"][param], grad, atol=1e-5, rtol=1e-4)
    for r in ranks:  # MoCo's queue and NNCLR's support set take the keys of both processes, in rank order
        for name in ("mocov2", "nnclr"):
            torch.testing.assert_close(r[name]["queue"], single[name]["queue"], atol=1e-6, rtol=1e-5)
            assert int(r[name]["queue_ptr"]) == int(single[name]["queue_ptr"]) == GLOBAL_BATCH

    weights = torch.arange(3.0 * WORLD) + 1
    for r, result in enumerate(ranks):
        torch.testing.assert_close(result["gathered_grad"], WORLD * weights[3 * r:3 * (r + 1)])
    torch.testing.assert_close(single["gathered_grad"], weights[:3])  # one process: gather is the identity
