import re

import pytest
import torch
from torch import nn

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS
from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods import super_resolution
from selfsup.methods.base import build_method
from selfsup.methods.super_resolution import downsample

TINY = TINY_OPTIONS["super-resolution"]


def test_downsample_averages_each_2x2_block():
    images = torch.rand(2, 3, 6, 6)
    low = downsample(images, 2)
    assert low.shape == (2, 3, 3, 3)
    for i in range(3):
        for j in range(3):
            block = images[:, :, 2 * i:2 * i + 2, 2 * j:2 * j + 2]
            assert torch.allclose(low[:, :, i, j], block.mean(dim=(-2, -1)))


def test_encoder_sees_only_the_low_resolution_content():
    method = build_method("super-resolution", SPEC, **TINY)
    images = torch.rand(3, 1, 28, 28)
    # add a pattern that averages to zero inside every 2x2 block: invisible at low resolution
    checker = (torch.arange(28)[:, None] + torch.arange(28)).remainder(2).float() * 0.2 - 0.1
    view, same_view = method.low_resolution_view(images), method.low_resolution_view(images + checker)
    assert torch.allclose(view, same_view, atol=1e-6) and not torch.allclose(images, images + checker)
    batch = (images * 255).round().to(torch.uint8)
    assert torch.equal(method.encoder_input(batch), method.low_resolution_view(batch.float() / 255))
    with pytest.raises(SelfSupError):
        build_method("super-resolution", DataSpec("image", 1, 27, 27), **TINY)


def test_each_phase_updates_only_its_own_player_and_content_net_stays_fixed():
    torch.manual_seed(0)
    method = build_method("super-resolution", SPEC, **TINY)
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    generator = list(method.phase_parameters("generator"))
    discriminator = list(method.phase_parameters("discriminator"))
    content = list(method.content_net.parameters())
    assert {id(p) for p in generator + discriminator + content} == {id(p) for p in method.parameters()}
    assert not any(p.requires_grad for p in content) and not {id(p) for p in generator} & {id(p) for p in discriminator}
    for phase, own, other in [("discriminator", discriminator, generator), ("generator", generator, discriminator)]:
        method.zero_grad(set_to_none=True)
        loss, _ = method.phase_loss(batch, phase)
        loss.backward()
        assert all(p.grad is None for p in other + content), phase
        assert all(p.grad is not None for p in own) and any(p.grad.abs().sum() > 0 for p in own), phase
    assert all(p.requires_grad for p in generator + discriminator)
    again = build_method("super-resolution", SPEC, **TINY).content_net
    assert all(torch.equal(a, b) for a, b in zip(content, again.parameters()))  # seeded, the same every run


class FixedResidual(nn.Module):
    """A decoder stand-in whose output is a leaf, so the generator output is known exactly."""

    def __init__(self, residual: torch.Tensor):
        super().__init__()
        self.residual = nn.Parameter(residual)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.residual + 0 * features.sum()


def _documented_weights() -> tuple[float, float, float]:
    """The default weights as the module docstring states them: "generator loss = a x pixel MSE + b x content
    + c x adversarial"."""
    found = re.search(r"generator loss = (\S+) x pixel MSE \+ (\S+) x content \+ (\S+) x adversarial",
                      super_resolution.__doc__)
    assert found, "the docstring no longer states the generator loss in the tested form"
    return tuple(float(w) for w in found.groups())


@pytest.mark.parametrize("overrides", [{}, {"content_weight": 0.5}, {"mse_weight": 0.0, "adversarial_weight": 0.1}])
def test_generator_loss_is_mse_plus_content_plus_weighted_adversarial(overrides):
    """By hand from its parts, with the docstring's weights (defaults) or the overridden ones."""
    torch.manual_seed(0)
    method = build_method("super-resolution", SPEC, **overrides, **TINY)
    documented = dict(zip(("mse_weight", "content_weight", "adversarial_weight"), _documented_weights()))
    w_mse, w_content, w_adv = ({**documented, **overrides}[k] for k in documented)
    images = torch.rand(2, 1, 28, 28)
    method.decoder = FixedResidual(0.1 * torch.randn(2, 1, 28, 28))
    loss, metrics = method.generator_loss(images)
    with torch.no_grad():
        output = method.low_resolution_view(images) + method.decoder.residual
        mse = ((output - images) ** 2).mean()
        content = ((method.content_net(output) - method.content_net(images)) ** 2).mean()
        adversarial = -torch.log(torch.sigmoid(method.discriminator(output))).mean()
    assert metrics["mse"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert metrics["content_loss"].item() == pytest.approx(content.item(), rel=1e-5)
    assert metrics["adv_loss"].item() == pytest.approx(adversarial.item(), rel=1e-5)
    assert loss.item() == pytest.approx((w_mse * mse + w_content * content + w_adv * adversarial).item(), rel=1e-5)


def test_loss_reports_its_terms_and_examples_show_low_and_high_resolution():
    method = build_method("super-resolution", SPEC)  # the default sizes
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    loss, metrics = method.loss(batch)
    assert loss.item() > 0 and set(metrics) == {"mse", "content_loss", "adv_loss"}
    ex = method.examples(batch)
    assert ex["low_res"].shape == ex["upscaled"].shape == ex["true"].shape == (4, 1, 28, 28)
    assert ex["mse"].shape == (4,)
    assert torch.equal(ex["low_res"][:, :, ::2, ::2], ex["low_res"][:, :, 1::2, 1::2])  # 2x2 blocks repeat


def test_generator_starts_as_bilinear_and_learns_to_beat_it_on_a_tiny_batch():
    torch.manual_seed(0)
    method = build_method("super-resolution", SPEC, **TINY)
    checker = ((torch.arange(28)[:, None] // 2 + torch.arange(28) // 3) % 2).float()  # sharp edges to restore
    batch = torch.stack([checker, checker.T, 1 - checker, 1 - checker.T]).unsqueeze(1)
    coarse, output = method.upscale(batch)
    assert torch.equal(coarse, output)  # the residual decoder starts at zero
    bilinear_mse = ((coarse - batch) ** 2).mean().item()
    opt = torch.optim.Adam(method.phase_parameters("generator"), lr=3e-3)
    for _ in range(150):
        loss, metrics = method.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    method.eval()
    with torch.no_grad():
        _, output = method.upscale(batch)
    assert ((output - batch) ** 2).mean().item() < 0.7 * bilinear_mse
