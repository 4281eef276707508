"""MoCo v3: the 2t-scaled InfoNCE against a plain computation, the symmetric loss, gradients stopped on the
momentum side and flowing on the query side, the frozen patch projection, the momentum update, and keys
gathered across 2 processes (gloo) equal to one process on the global batch."""
from __future__ import annotations

import math
from copy import deepcopy
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
from torch import nn

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, fit_batch, noise_images, results_per_process
from selfsup.errors import SelfSupError
from selfsup.losses.momentum_contrast import scaled_info_nce
from selfsup.methods.base import build_method
from selfsup.nets.momentum import cosine_tau

TINY = TINY_OPTIONS["mocov3"]


def tiny_mocov3(**options) -> nn.Module:
    torch.manual_seed(0)
    return build_method("mocov3", SPEC, **deepcopy(TINY), **options)


def reference_ctr(q: torch.Tensor, k: torch.Tensor, t: float, offset: int) -> float:
    """Algorithm 1 of the paper, one query at a time: -log softmax of its own key, times 2t."""
    total = 0.0
    for i in range(len(q)):
        qi = q[i] / q[i].norm()
        sims = [float(qi @ (kj / kj.norm())) / t for kj in k]
        total += -(sims[offset + i] - math.log(sum(math.exp(s) for s in sims)))
    return 2 * t * total / len(q)


@pytest.mark.parametrize("offset", [0, 3])
def test_scaled_info_nce_equals_the_papers_formula(offset: int) -> None:
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(3, 5, generator=g), torch.randn(7, 5, generator=g)
    assert scaled_info_nce(q, k, 0.2, offset).item() == pytest.approx(reference_ctr(q, k, 0.2, offset), rel=1e-5)
    with pytest.raises(SelfSupError, match="do not fit"):
        scaled_info_nce(q, k, 0.2, offset=5)


def test_defaults_follow_the_paper() -> None:
    method = build_method("mocov3", SPEC)
    c = method.config
    assert (c.temperature, c.base_momentum, c.optimizer) == (0.2, 0.99, "adamw")
    assert method.encoder.patch_size == 4 and method.encoder.num_patches == 49
    linears = lambda m: [x for x in m if isinstance(x, nn.Linear)]  # noqa: E731
    assert len(linears(method.projector)) == 3 and len(linears(method.predictor)) == 2
    for head in (method.projector, method.predictor):  # the authors' MLPs end in a BatchNorm without affine
        assert isinstance(head[-1], nn.BatchNorm1d) and not head[-1].affine
    assert not hasattr(method, "queue")
    with pytest.raises(SelfSupError, match="ViT"):
        build_method("mocov3", SPEC, encoder="convnet", encoder_kwargs={})


def test_loss_is_the_symmetric_contrast_of_queries_with_the_other_views_keys() -> None:
    method = tiny_mocov3()
    v1, v2 = torch.rand(2, 6, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    loss, metrics = method.loss_from_views(v1, v2)
    with torch.no_grad():
        q1, q2 = method.query(v1), method.query(v2)
        k1, k2 = (method.momentum_projector(method.momentum_encoder(v)) for v in (v1, v2))
    expected = reference_ctr(q1, k2, 0.2, 0) + reference_ctr(q2, k1, 0.2, 0)
    assert loss.item() == pytest.approx(expected, rel=1e-5)
    assert 0 <= float(metrics["pretext_acc"]) <= 1 and metrics["momentum"] == 0.99


def test_gradient_flows_on_the_query_side_only_and_the_patch_projection_stays_fixed() -> None:
    method = tiny_mocov3()
    proj = method.encoder.blocks["patch_embed"].proj
    start = {key: p.detach().clone() for key, p in method.named_parameters()}
    loss, _ = method.loss(noise_images(8))
    loss.backward()
    momentum_side = list(method.momentum_encoder.parameters()) + list(method.momentum_projector.parameters())
    assert all(not p.requires_grad and p.grad is None for p in momentum_side)
    assert proj.weight.grad is None and proj.bias.grad is None and not proj.weight.requires_grad
    query_side = [p for m in (method.encoder, method.projector, method.predictor) for p in m.parameters()
                  if p.requires_grad]
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in query_side)
    trainable = {id(p) for p in method.trainable_parameters()}
    assert id(proj.weight) not in trainable and id(proj.bias) not in trainable
    # Training (the optimizer over every parameter, weight decay included) leaves the projection as it was.
    method.zero_grad()
    fit_batch(method, noise_images(8), steps=2, lr=1e-2)
    method.after_step(0.5)
    assert torch.equal(proj.weight, start["encoder.blocks.patch_embed.proj.weight"])
    # The momentum copy averages two equal values: equal up to rounding.
    torch.testing.assert_close(method.momentum_encoder.blocks["patch_embed"].proj.weight, proj.weight)
    assert not torch.equal(method.encoder.blocks["block1"].qkv.weight, start["encoder.blocks.block1.qkv.weight"])


def test_the_patch_projection_trains_when_not_frozen() -> None:
    method = tiny_mocov3(freeze_patch_projection=False)
    method.loss(noise_images(8))[0].backward()
    assert method.encoder.blocks["patch_embed"].proj.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("progress", [0.0, 0.3, 1.0])
def test_after_step_moves_the_momentum_side_by_the_cosine_ema(progress: float) -> None:
    method = tiny_mocov3()
    with torch.no_grad():
        for p in list(method.encoder.parameters()) + list(method.projector.parameters()):
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in list(method.encoder.parameters()) + list(method.projector.parameters())]
    momentum = [p.clone() for p in list(method.momentum_encoder.parameters())
                + list(method.momentum_projector.parameters())]
    method.after_step(progress)
    m = cosine_tau(0.99, progress)
    assert method.momentum == pytest.approx(m) and m == pytest.approx(0.99 + 0.01 * (1 - math.cos(math.pi * progress)) / 2)
    after = list(method.momentum_encoder.parameters()) + list(method.momentum_projector.parameters())
    for new, old, o in zip(after, momentum, online, strict=True):
        torch.testing.assert_close(new, m * old + (1 - m) * o)


# --- two processes: keys gathered across ranks ------------------------------------------------------------
WORLD, GLOBAL_BATCH = 2, 8


def _no_batchnorm_method() -> nn.Module:
    """BatchNorm statistics per process differ from whole-batch ones by design; strip them to compare."""
    method = tiny_mocov3(sync_bn=False)
    for head in (method.projector, method.predictor, method.momentum_projector):
        for i, layer in enumerate(head):
            if isinstance(layer, nn.BatchNorm1d):
                head[i] = nn.Identity()
    return method


def _loss_and_averaged_grads(shard: slice) -> dict:
    g = torch.Generator().manual_seed(5)
    v1, v2 = torch.rand(2, GLOBAL_BATCH, 1, 28, 28, generator=g)
    method = _no_batchnorm_method()
    loss, metrics = method.loss_from_views(v1[shard], v2[shard])
    loss.backward()
    grads = {key: p.grad.clone() for key, p in method.named_parameters() if p.grad is not None}
    if dist.is_initialized():  # as DDP does
        for grad in grads.values():
            dist.all_reduce(grad)
            grad /= WORLD
    return {"loss": loss.detach(), "acc": metrics["pretext_acc"], "grads": grads}


def test_two_processes_with_gathered_keys_equal_one_process_on_the_global_batch(tmp_path: Path) -> None:
    ranks = results_per_process(_loss_and_averaged_grads, tmp_path, GLOBAL_BATCH, WORLD)
    single = _loss_and_averaged_grads(slice(0, GLOBAL_BATCH))
    # Each rank averages over its own queries against all 8 keys: the mean over ranks is the global loss.
    torch.testing.assert_close(sum(r["loss"] for r in ranks) / WORLD, single["loss"], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sum(r["acc"] for r in ranks) / WORLD, single["acc"])
    assert single["grads"] and set(ranks[0]["grads"]) == set(single["grads"])
    for key, grad in single["grads"].items():
        for r in ranks:
            torch.testing.assert_close(r["grads"][key], grad, atol=1e-5, rtol=1e-4)
