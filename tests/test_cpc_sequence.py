"""CPC on sequences: context/target alignment, a causal context, the loss equal to a plain InfoNCE
reference, and training that lowers it."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import CLIP_SPEC as SPEC, TINY_OPTIONS
from selfsup.methods.base import build_method
from selfsup.methods.cpc_sequence import future_pairs

TINY = TINY_OPTIONS["cpc-sequence"]


def clips(n: int = 4, t: int = 5, seed: int = 0) -> torch.Tensor:
    """Random clips made of smooth blobs (upsampled noise), so frames differ in structure, not just noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n * t, 1, 4, 4, generator=g)
    fine = torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)
    return (fine * 255).round().to(torch.uint8).view(n, t, 1, 16, 16)


def test_future_pairs_align_context_t_with_code_t_plus_k() -> None:
    codes = torch.arange(2 * 5, dtype=torch.float32).view(2, 5, 1)  # code value = 5 * clip + time
    contexts = codes + 0.5
    context, target = future_pairs(codes, contexts, 2)
    assert context.squeeze(1).tolist() == [0.5, 1.5, 2.5, 5.5, 6.5, 7.5]
    assert target.squeeze(1).tolist() == [2.0, 3.0, 4.0, 7.0, 8.0, 9.0]


def test_context_is_causal() -> None:
    torch.manual_seed(0)
    method = build_method("cpc-sequence", SPEC, **TINY)
    x = clips().float().div(255).requires_grad_(True)
    _, contexts = method.codes_and_contexts(x)
    contexts[:, 2].sum().backward()
    assert x.grad[:, 3:].abs().sum() == 0  # c_2 never sees frames 3 and 4
    assert x.grad[:, :3].abs().sum() > 0


def reference_loss(method, batch: torch.Tensor) -> float:
    """Mean over steps k of the mean over (clip, t) of -log softmax_j(z_j . W_k c_t) at the true z_t+k."""
    codes, contexts = method.codes_and_contexts(batch.float() / 255)
    n, t = codes.shape[:2]
    per_step = []
    for k, predictor in enumerate(method.predictors, start=1):
        rows = [(i, s) for i in range(n) for s in range(t - k)]
        total = 0.0
        for i, s in rows:
            prediction = predictor(contexts[i, s])
            scores = [float(prediction @ codes[j, u + k]) for j, u in rows]
            own = rows.index((i, s))
            total += -scores[own] + math.log(sum(math.exp(v) for v in scores))
        per_step.append(total / len(rows))
    return sum(per_step) / len(per_step)


def test_loss_matches_plain_reference() -> None:
    torch.manual_seed(0)
    method = build_method("cpc-sequence", SPEC, **TINY)
    batch = clips(3)
    loss, metrics = method.loss(batch)
    with torch.no_grad():
        assert loss.item() == pytest.approx(reference_loss(method, batch), rel=1e-4)
    assert 0 <= float(metrics["pretext_acc"]) <= 1


def test_training_lowers_the_loss() -> None:
    torch.manual_seed(0)
    method = build_method("cpc-sequence", SPEC, **TINY)
    batch = clips(4)
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    losses = []
    for step in range(60):
        loss, _ = method.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(step / 60)
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0]
    assert method.examples(batch)["frame_0"].shape == (4, 1, 16, 16)


def test_too_many_steps_for_the_clip_length_is_refused() -> None:
    with pytest.raises(ValueError, match="steps ahead"):
        build_method("cpc-sequence", SPEC, steps=5)
