"""The two losses of a generator and a discriminator trained in turn (Goodfellow et al., 2014), as the
adversarial pretext tasks use them (context encoders, Pathak et al., 2016; SRGAN, Ledig et al., 2017)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Build the graph without `module`'s parameters as leaves: a loss computed inside sends no gradient
    into them (the other player's turn), while gradients still flow through them to the inputs."""
    previous = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in previous:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in previous:
            p.requires_grad_(flag)


def discriminator_loss(discriminator: nn.Module, real: Tensor, fake: Tensor) -> Tensor:
    """Binary cross-entropy: real images -> 1, generated ones -> 0 (the fakes carry no generator graph)."""
    real_logits, fake_logits = discriminator(real), discriminator(fake.detach())
    return 0.5 * (F.binary_cross_entropy_with_logits(real_logits, torch.ones_like(real_logits))
                  + F.binary_cross_entropy_with_logits(fake_logits, torch.zeros_like(fake_logits)))


def fooling_loss(discriminator: nn.Module, fake: Tensor) -> Tensor:
    """The generator's non-saturating adversarial loss, -log D(fake), with the discriminator frozen."""
    with frozen(discriminator):
        logits = discriminator(fake)
    return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
