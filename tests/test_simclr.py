"""SimCLR: NT-Xent against a plainly written reference, views, building, one training step, overfitting."""
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import GRAY_SPEC as SPEC, TINY_OPTIONS, noise_images
from selfsup.methods.base import build_method
from selfsup.methods.simclr import nt_xent_across_ranks

TINY = TINY_OPTIONS["simclr"]


def reference_nt_xent(z1: torch.Tensor, z2: torch.Tensor, t: float) -> float:
    """Chen et al. 2020, Algorithm 1, written with loops over the 2N views."""
    z = [F.normalize(v, dim=0) for v in torch.cat([z1, z2])]
    n = len(z1)
    total = 0.0
    for i in range(2 * n):
        j = (i + n) % (2 * n)
        numerator = math.exp(float(z[i] @ z[j]) / t)
        denominator = sum(math.exp(float(z[i] @ z[k]) / t) for k in range(2 * n) if k != i)
        total += -math.log(numerator / denominator)
    return total / (2 * n)


def test_loss_is_nt_xent_of_the_projections_of_the_two_views() -> None:
    torch.manual_seed(0)
    method = build_method("simclr", SPEC, temperature=0.3, **TINY)
    v1, v2 = torch.rand(2, 6, 1, 28, 28)
    loss, _ = method.loss_from_views(v1, v2)
    z1, z2 = method.project(torch.cat([v1, v2])).chunk(2)
    assert abs(loss.item() - reference_nt_xent(z1.detach(), z2.detach(), 0.3)) < 1e-5


def test_single_process_across_ranks_version_equals_the_reference() -> None:
    z1, z2 = torch.randn(2, 5, 7)
    assert abs(nt_xent_across_ranks(z1, z2, 0.5).item() - reference_nt_xent(z1, z2, 0.5)) < 1e-5


def test_views_are_two_different_random_augmentations_of_the_batch() -> None:
    method = build_method("simclr", SPEC, **TINY)
    torch.manual_seed(1)
    v1, v2 = method.make_views(noise_images(4))
    assert v1.shape == v2.shape == (4, 1, 28, 28)
    assert not torch.equal(v1, v2)
    ex = method.examples(noise_images(4))
    assert set(ex) == {"images", "view_1", "view_2"} and ex["view_1"].shape == (4, 1, 28, 28)


def test_loss_decreases_when_overfitting_fixed_views() -> None:
    torch.manual_seed(0)
    method = build_method("simclr", SPEC, **TINY)
    v1, v2 = method.make_views(noise_images(16))
    opt = torch.optim.Adam(method.trainable_parameters(), lr=1e-2)
    first = None
    for _ in range(15):
        loss, _ = method.loss_from_views(v1, v2)
        first = first if first is not None else loss.item()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < first - 0.3


def test_head_variants_of_the_papers_ablation():
    from selfsup.errors import SelfSupError
    mlp_head = build_method("simclr", SPEC, head="mlp").projector
    linear_head = build_method("simclr", SPEC, head="linear").projector
    assert sum(isinstance(m, torch.nn.Linear) for m in mlp_head) == 2
    assert sum(isinstance(m, torch.nn.Linear) for m in linear_head) == 1
    assert not any(isinstance(m, torch.nn.ReLU) for m in linear_head)
    none = build_method("simclr", SPEC, head="none")
    x = torch.rand(4, 1, 28, 28)
    none.eval()
    assert torch.equal(none.project(x), none.encoder(x))
    with pytest.raises(SelfSupError, match="mlp"):
        build_method("simclr", SPEC, head="mpl")
