"""SimSiam: the stop-gradient (checked with autograd), the loss, one step, no collapse on a tiny run."""
import pytest
import torch
import torch.nn.functional as F

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.methods.base import build_method
from selfsup.methods.simsiam import negative_cosine

TINY = TINY_OPTIONS["simsiam"]


def test_negative_cosine_sends_no_gradient_to_the_target() -> None:
    p, z = torch.randn(2, 5, 4, requires_grad=True)
    loss = negative_cosine(p, z)
    grad_p, grad_z = torch.autograd.grad(loss, [p, z], allow_unused=True)
    assert grad_z is None and grad_p is not None
    assert loss.item() == pytest.approx(-F.cosine_similarity(p, z, dim=1).mean().item())


def test_projections_get_gradient_only_through_the_predictor() -> None:
    torch.manual_seed(0)
    method = build_method("simsiam", SPEC, **TINY)
    captured = {}
    method.projector.register_forward_hook(lambda m, i, out: captured.update(z=out))
    v1, v2 = torch.rand(2, 6, 1, 28, 28)
    loss, _ = method.loss_from_views(v1, v2)
    z = captured["z"]
    (grad_through_loss,) = torch.autograd.grad(loss, z)
    # The same loss with the projections as a leaf for the predictor and as constants for the target:
    leaf = z.detach().requires_grad_()
    p1, p2 = method.predictor(leaf).chunk(2)
    z1, z2 = z.detach().chunk(2)
    predictor_only = -F.cosine_similarity(p1, z2).mean() / 2 - F.cosine_similarity(p2, z1).mean() / 2
    (grad_predictor_path,) = torch.autograd.grad(predictor_only, leaf, retain_graph=True)
    torch.testing.assert_close(grad_through_loss, grad_predictor_path)
    # Without the stop-gradient the target branch would add its own term:
    l1, l2 = leaf.chunk(2)
    both_paths = -F.cosine_similarity(p1, l2).mean() / 2 - F.cosine_similarity(p2, l1).mean() / 2
    (grad_both,) = torch.autograd.grad(both_paths, leaf)
    assert not torch.allclose(grad_both, grad_predictor_path)


def test_no_momentum_encoder_and_every_parameter_trains() -> None:
    method = build_method("simsiam", SPEC, **TINY)
    assert len(method.trainable_parameters()) == len(list(method.parameters()))
    assert method.config.optimizer == "sgd" and method.config.lr == 0.05


def test_loss_is_a_cosine_and_decreases_on_fixed_views() -> None:
    torch.manual_seed(0)
    method = build_method("simsiam", SPEC, **TINY)
    loss, metrics = method.loss(noise_images(8))
    loss.backward()
    method.after_step(0.5)
    assert -1 <= loss.item() <= 1 and float(metrics["z_std"]) > 0
    v1, v2 = method.make_views(noise_images(16))
    opt = torch.optim.SGD(method.trainable_parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(8):
        loss, _ = method.loss_from_views(v1, v2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0]
    assert set(method.examples(noise_images(4))) == {"images", "view_1", "view_2"}
