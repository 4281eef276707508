"""The adversarial family's shared part (context-encoder inpainting, SRGAN-style super-resolution): a
generator and a discriminator trained in turn, each phase with its own optimizer."""
from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor, nn

from selfsup.errors import unknown_name
from selfsup.losses.adversarial import discriminator_loss
from selfsup.methods.base import Method
from selfsup.views.basic import to_float


class AdversarialMethod(Method):
    """A generator (`encoder` + `decoder`, the encoder transfers) and a `discriminator`, trained in turn
    with one optimizer each, each phase updating only its own player's parameters.

    A subclass builds the three nets and gives `fakes(images)`, the generated images the discriminator
    judges, and `generator_loss(images)`, the generator's objective (its adversarial term through
    `losses.adversarial.fooling_loss`).
    """

    phases = ("discriminator", "generator")
    decoder: nn.Module
    discriminator: nn.Module

    def fakes(self, images: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        raise NotImplementedError

    def phase_parameters(self, phase: str) -> Iterable[nn.Parameter]:
        """Each player's own parameters: the discriminator's, or the generator's (encoder + decoder)."""
        if phase == "discriminator":
            return list(self.discriminator.parameters())
        if phase == "generator":
            return list(self.encoder.parameters()) + list(self.decoder.parameters())
        raise unknown_name("phase", phase, list(self.phases))

    def phase_loss(self, batch: Tensor, phase: str) -> tuple[Tensor, dict[str, Tensor]]:
        images = to_float(batch)
        if phase == "discriminator":
            with torch.no_grad():  # the generator's turn is later: no graph, no gradients for it
                fakes = self.fakes(images)
            loss = discriminator_loss(self.discriminator, images, fakes)
            return loss, {"d_loss": loss.detach()}
        if phase == "generator":
            return self.generator_loss(images)
        raise unknown_name("phase", phase, list(self.phases))

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's objective (the part that trains the encoder); trainers that know `phases`
        call `phase_loss` instead, so that the discriminator learns too."""
        return self.generator_loss(to_float(batch))
