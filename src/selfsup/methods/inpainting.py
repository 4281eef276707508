"""Context encoder: predict the hidden pixels of an image from the pixels around them.

Pathak, Krähenbühl, Donahue, Darrell & Efros, "Context Encoders: Feature Learning by Inpainting",
CVPR 2016. Kept from the paper: central-block, random-block and random-region masks; an encoder-decoder
generator whose encoder transfers; an L2 reconstruction loss on the hidden region plus an adversarial
loss from a discriminator, weighted lambda_rec = 0.999 and lambda_adv = 0.001; hidden pixels filled with
a constant (the paper: the mean pixel); the two players trained in turn with one optimizer each
(`phases` = ("discriminator", "generator")), each phase updating only its own parameters.
Deviations (28x28 images, 2 CPU cores):
- the encoder is the toolkit's BlockEncoder (default: the small ConvNet; paper: AlexNet); its feature
  vector goes through one fully connected layer into the decoder (paper: a channel-wise fc layer);
- the decoder is two transposed convolutions (7 -> 14 -> 28) and predicts the whole image; the loss
  counts hidden pixels only (paper: the central region plus 7 overlapping pixels weighted 10x);
- the discriminator judges whole completed images (generated pixels pasted into the hole), not the
  hole alone, so the same code serves all three mask types; no BatchNorm in it;
- random blocks: 4 squares of 7 pixels (at most 1/4 of the image); random regions: smooth noise blobs
  covering exactly 1/4 of the image (paper: shapes from PASCAL VOC segmentations, not available offline);
- Adam at lr 1e-3 (paper: 2e-4, for far longer training), beta1 0.5 as in the paper.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError, unknown_name
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.views.basic import to_float
from selfsup.views.masks import central_block_mask, random_block_mask, random_region_mask

MASKS = ("central", "random_block", "random_region")


# --- players shared with the super-resolution pretext task -----------------------------------------
class ImageDecoder(nn.Module):
    """Feature vector (N, D) -> image (N, C, S, S): one fc layer to a (width, S/4, S/4) map, then two
    stride-2 transposed convolutions (DCGAN-style, BatchNorm + ReLU between)."""

    def __init__(self, in_dim: int, channels: int, image_size: int, width: int = 64, sigmoid: bool = True):
        super().__init__()
        if image_size % 4:
            raise SelfSupError(f"the decoder upsamples x4 from a fc map, so the image size must be a multiple "
                               f"of 4; got {image_size}")
        self.width, self.side = width, image_size // 4
        self.fc = nn.Sequential(nn.Linear(in_dim, width * self.side ** 2), nn.ReLU(inplace=True))
        self.up = nn.Sequential(
            nn.ConvTranspose2d(width, width // 2, 4, 2, 1, bias=False), nn.BatchNorm2d(width // 2),
            nn.ReLU(inplace=True), nn.ConvTranspose2d(width // 2, channels, 4, 2, 1))
        self.sigmoid = sigmoid

    def forward(self, features: Tensor) -> Tensor:
        x = self.up(self.fc(features).view(-1, self.width, self.side, self.side))
        return torch.sigmoid(x) if self.sigmoid else x


class Discriminator(nn.Module):
    """Image (N, C, S, S) -> one real/fake logit: two stride-2 convolutions with LeakyReLU(0.2), a linear."""

    def __init__(self, channels: int, image_size: int, width: int = 32):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True), nn.Flatten())
        self.logit = nn.Linear(2 * width * (image_size // 4) ** 2, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.logit(self.features(images)).squeeze(1)


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


def player_parameters(method: Method, phase: str) -> list[nn.Parameter]:
    """Each player's own parameters: the discriminator's, or the generator's (encoder + decoder)."""
    if phase == "discriminator":
        return list(method.discriminator.parameters())
    if phase == "generator":
        return list(method.encoder.parameters()) + list(method.decoder.parameters())
    raise unknown_name("phase", phase, list(method.phases))


# --- the method ------------------------------------------------------------------------------------
@dataclass
class InpaintingConfig(MethodConfig):
    mask: str = "central"  # central | random_block | random_region
    central_fraction: float = 0.5  # side of the central square (paper: 64 of 128)
    block_count: int = 4  # random blocks per image
    block_size: int = 7  # pixels; 4 blocks of 7 cover at most 1/4 of 28x28, as the paper's up-to-1/4
    region_fraction: float = 0.25  # random regions hide exactly this share of pixels
    fill: float = 0.5  # value of hidden input pixels (paper: the mean pixel)
    lambda_rec: float = 0.999
    lambda_adv: float = 0.001
    decoder_width: int = 32  # channels of the decoder's first map; small for 2 CPU cores
    discriminator_width: int = 16  # small for 2 CPU cores
    lr: float = 1e-3  # paper: 2e-4 (Adam, beta1 0.5) for far longer runs
    betas: tuple[float, float] = (0.5, 0.999)  # the paper's (and DCGAN's) beta1 for adversarial training


@METHODS.register("inpainting")
class Inpainting(Method):
    name = "inpainting"
    Config = InpaintingConfig
    phases = ("discriminator", "generator")
    default_epochs = 8  # 21 s CPU per 20k-image epoch, both phases: ~2-3 min

    def __init__(self, config: InpaintingConfig, spec: DataSpec):
        super().__init__(config, spec)
        if config.mask not in MASKS:
            raise unknown_name("inpainting mask", config.mask, list(MASKS))
        self.encoder = self.configured_encoder()
        self.decoder = ImageDecoder(self.encoder.feature_dim(), spec.channels, spec.height, config.decoder_width)
        self.discriminator = Discriminator(spec.channels, spec.height, config.discriminator_width)

    def make_mask(self, n: int, height: int, width: int, device: torch.device) -> Tensor:
        """Bool (N, 1, H, W), True where pixels are hidden, of the configured kind."""
        c = self.config
        if c.mask == "central":
            return central_block_mask(n, height, width, c.central_fraction, device)
        if c.mask == "random_block":
            return random_block_mask(n, height, width, c.block_size, c.block_count, device)
        return random_region_mask(n, height, width, c.region_fraction, device=device)

    def inpaint(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The generator: (masked input, decoder output over the whole image, mask)."""
        n, _, h, w = images.shape
        mask = self.make_mask(n, h, w, images.device)
        masked = images.masked_fill(mask, self.config.fill)
        return masked, self.decoder(self.encoder(masked)), mask

    def phase_parameters(self, phase: str) -> Iterable[nn.Parameter]:
        return player_parameters(self, phase)

    def phase_loss(self, batch: Tensor, phase: str) -> tuple[Tensor, dict[str, Tensor]]:
        images = to_float(batch)
        if phase == "discriminator":
            with torch.no_grad():  # the generator's turn is later: no graph, no gradients for it
                _, output, mask = self.inpaint(images)
            loss = discriminator_loss(self.discriminator, images, torch.where(mask, output, images))
            return loss, {"d_loss": loss.detach()}
        if phase == "generator":
            return self.generator_loss(images)
        raise unknown_name("phase", phase, list(self.phases))

    def generator_loss(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        _, output, mask = self.inpaint(images)
        hidden = mask.expand_as(images)
        reconstruction = (output - images).pow(2)[hidden].mean()  # L2 over hidden pixels only
        adversarial = fooling_loss(self.discriminator, torch.where(mask, output, images))
        loss = self.config.lambda_rec * reconstruction + self.config.lambda_adv * adversarial
        return loss, {"rec_loss": reconstruction.detach(), "adv_loss": adversarial.detach()}

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        """The generator's objective (the part that trains the encoder); trainers that know `phases`
        call `phase_loss` instead, so that the discriminator learns too."""
        return self.generator_loss(to_float(batch))

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """8 images: the masked input, the inpainted image (prediction pasted into the hole), the truth."""
        images = to_float(batch[:8])
        masked, output, mask = self.inpaint(images)
        return {"masked": masked, "inpainted": torch.where(mask, output, images), "true": images,
                "hidden_pixels": mask.flatten(1).sum(1)}
