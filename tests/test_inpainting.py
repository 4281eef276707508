import numpy as np
import pytest
import torch
from torch import nn

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS
from selfsup.errors import SelfSupError
from selfsup.methods.base import build_method
from selfsup.views.masks import block_mask, central_block_mask, random_block_mask, random_region_mask

TINY = TINY_OPTIONS["inpainting"]


def test_central_mask_covers_exactly_the_central_square():
    mask = central_block_mask(3, 28, 28)
    expected = torch.zeros(28, 28, dtype=torch.bool)
    expected[7:21, 7:21] = True  # side 14 = half of 28, centred
    assert mask.shape == (3, 1, 28, 28) and (mask == expected).all()


def test_block_mask_is_the_union_of_the_squares():
    g = torch.Generator().manual_seed(0)
    tops, lefts = torch.randint(0, 22, (5, 4), generator=g), torch.randint(0, 22, (5, 4), generator=g)
    mask = block_mask(tops, lefts, 7, 28, 28)
    expected = torch.zeros(5, 1, 28, 28, dtype=torch.bool)
    for n in range(5):
        for k in range(4):
            t, l = tops[n, k].item(), lefts[n, k].item()
            expected[n, 0, t:t + 7, l:l + 7] = True
    assert torch.equal(mask, expected)


def test_random_blocks_are_drawn_from_the_generator_and_cover_at_most_a_quarter():
    mask = random_block_mask(50, 28, 28, 7, 4, generator=torch.Generator().manual_seed(3))
    g = torch.Generator().manual_seed(3)
    tops, lefts = torch.randint(0, 22, (50, 4), generator=g), torch.randint(0, 22, (50, 4), generator=g)
    assert torch.equal(mask, block_mask(tops, lefts, 7, 28, 28))
    counts = mask.flatten(1).sum(1)
    assert counts.max() <= 4 * 49 and counts.min() >= 49 and counts.unique().numel() > 1  # overlaps vary


def test_random_region_hides_exactly_the_fraction():
    mask = random_region_mask(20, 28, 28, 0.25, generator=torch.Generator().manual_seed(0))
    assert (mask.flatten(1).sum(1) == 196).all()
    assert len({tuple(m.flatten().tolist()) for m in mask}) == 20


@pytest.mark.parametrize("kind", ["central", "random_block", "random_region"])
def test_input_is_filled_exactly_where_hidden(kind):
    torch.manual_seed(0)
    method = build_method("inpainting", SPEC, mask=kind, fill=0.25, **TINY)
    images = torch.rand(6, 1, 28, 28) * 0.1 + 0.5  # never equal to the fill value
    masked, output, mask = method.inpaint(images)
    assert torch.equal(masked == 0.25, mask) and torch.equal(masked[~mask], images[~mask])
    assert output.shape == images.shape and output.min() >= 0 and output.max() <= 1


def test_unknown_mask_is_refused_with_a_suggestion():
    with pytest.raises(SelfSupError, match="central"):
        build_method("inpainting", SPEC, mask="centrall")


def test_each_phase_updates_only_its_own_player():
    torch.manual_seed(0)
    method = build_method("inpainting", SPEC, mask="random_block", **TINY)
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    generator = list(method.phase_parameters("generator"))
    discriminator = list(method.phase_parameters("discriminator"))
    assert {id(p) for p in generator + discriminator} == {id(p) for p in method.parameters()}
    assert not {id(p) for p in generator} & {id(p) for p in discriminator}
    for phase, own, other in [("discriminator", discriminator, generator), ("generator", generator, discriminator)]:
        method.zero_grad(set_to_none=True)
        loss, _ = method.phase_loss(batch, phase)
        loss.backward()
        assert all(p.grad is None for p in other), phase
        assert all(p.grad is not None for p in own) and any(p.grad.abs().sum() > 0 for p in own), phase
    assert all(p.requires_grad for p in method.parameters())  # freezing was undone


class FixedOutput(nn.Module):
    """A decoder stand-in whose output is a leaf, to read the loss's gradient per pixel."""

    def __init__(self, image: torch.Tensor):
        super().__init__()
        self.image = nn.Parameter(image)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.image + 0 * features.sum()


def test_generator_loss_counts_hidden_pixels_only():
    torch.manual_seed(0)
    method = build_method("inpainting", SPEC, **TINY)  # central mask: deterministic
    images = torch.rand(2, 1, 28, 28)
    method.decoder = FixedOutput(torch.rand(2, 1, 28, 28))
    loss, metrics = method.generator_loss(images)
    out = method.decoder.image.detach()
    reference = np.mean([(out[n, 0, r, c] - images[n, 0, r, c]).item() ** 2
                         for n in range(2) for r in range(7, 21) for c in range(7, 21)])
    assert metrics["rec_loss"].item() == pytest.approx(reference, rel=1e-5)
    assert loss.item() == pytest.approx(0.999 * reference + 0.001 * metrics["adv_loss"].item(), rel=1e-5)
    loss.backward()
    grad = method.decoder.image.grad
    hole = central_block_mask(2, 28, 28)
    assert (grad[~hole] == 0).all() and (grad[hole] != 0).all()


def test_loss_reports_both_terms_and_examples_show_the_central_hole():
    method = build_method("inpainting", SPEC)  # the default sizes
    batch = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    loss, metrics = method.loss(batch)
    assert loss.item() > 0 and set(metrics) == {"rec_loss", "adv_loss"}
    ex = method.examples(batch)
    assert ex["masked"].shape == ex["inpainted"].shape == ex["true"].shape == (4, 1, 28, 28)
    assert torch.equal(ex["hidden_pixels"], torch.full((4,), 196))


def test_reconstruction_improves_on_a_tiny_batch():
    torch.manual_seed(0)
    method = build_method("inpainting", SPEC, **TINY)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, 28), torch.linspace(0, 1, 28), indexing="ij")
    batch = torch.stack([yy, xx, 1 - yy, 1 - xx]).unsqueeze(1)  # ramps: the hole follows from its border
    opt = torch.optim.Adam(method.phase_parameters("generator"), lr=3e-3)
    losses = []
    for _ in range(60):
        loss, metrics = method.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(metrics["rec_loss"].item())
    assert np.mean(losses[-10:]) < 0.5 * np.mean(losses[:10])
