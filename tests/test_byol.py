"""BYOL: the target gets no gradient, tau schedule values, exact EMA, symmetric loss, one step."""
import math

import pytest
import torch

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.methods.base import build_method
from selfsup.methods.byol import cosine_tau

TINY = TINY_OPTIONS["byol"]


def test_tau_schedule_is_base_then_halfway_then_one() -> None:
    assert cosine_tau(0.996, 0.0) == pytest.approx(0.996, abs=1e-12)
    assert cosine_tau(0.996, 0.5) == pytest.approx(0.998, abs=1e-12)
    assert cosine_tau(0.996, 1.0) == pytest.approx(1.0, abs=1e-12)


def test_target_gets_no_gradient_and_starts_equal_to_online() -> None:
    torch.manual_seed(0)
    method = build_method("byol", SPEC, **TINY)
    for o, t in zip(method.encoder.parameters(), method.target_encoder.parameters()):
        assert torch.equal(o, t) and not t.requires_grad
    loss, _ = method.loss(noise_images(8))
    loss.backward()
    assert all(p.grad is None for p in method.target_encoder.parameters())
    assert all(p.grad is None for p in method.target_projector.parameters())
    assert all(p.grad is not None for p in method.predictor.parameters())
    assert all(p.grad is not None for p in method.encoder.parameters())
    trainable = {id(p) for p in method.trainable_parameters()}
    assert not any(id(p) in trainable for p in method.target_encoder.parameters())


def test_after_step_moves_the_target_by_the_ema_rule() -> None:
    torch.manual_seed(0)
    method = build_method("byol", SPEC, **TINY)
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(torch.randn_like(p))
    online = [p.detach().clone() for p in method.encoder.parameters()]
    before = [p.detach().clone() for p in method.target_encoder.parameters()]
    method.after_step(0.5)
    assert method.tau == pytest.approx(0.998)
    for t, b, o in zip(method.target_encoder.parameters(), before, online):
        torch.testing.assert_close(t, 0.998 * b + 0.002 * o)


def test_loss_is_the_symmetric_normalised_regression() -> None:
    torch.manual_seed(0)
    method = build_method("byol", SPEC, **TINY)
    v1, v2 = torch.rand(2, 6, 1, 28, 28)
    loss, _ = method.loss_from_views(v1, v2)
    both = torch.cat([v1, v2])
    with torch.no_grad():
        q1, q2 = method.predictor(method.projector(method.encoder(both))).chunk(2)
        z1, z2 = method.target_projector(method.target_encoder(both)).chunk(2)

    def plain(q: torch.Tensor, z: torch.Tensor) -> float:
        total = 0.0
        for a, b in zip(q, z):
            a, b = a / a.norm(), b / b.norm()
            total += float(((a - b) ** 2).sum())
        return total / len(q)

    assert loss.item() == pytest.approx(plain(q1, z2) + plain(q2, z1), abs=1e-5)


def test_loss_decreases_on_fixed_views_while_the_target_follows() -> None:
    torch.manual_seed(0)
    method = build_method("byol", SPEC, **TINY)
    v1, v2 = method.make_views(noise_images(16))
    assert not torch.equal(v1, v2)
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)
    losses = []
    for step in range(8):
        loss, metrics = method.loss_from_views(v1, v2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        method.after_step(step / 8)
        losses.append(loss.item())
    assert math.isfinite(losses[0]) and losses[-1] < losses[0]
    assert set(method.examples(noise_images(4))) == {"images", "view_1", "view_2"}
