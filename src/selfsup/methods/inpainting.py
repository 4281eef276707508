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

from dataclasses import dataclass

import torch
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.errors import unknown_name
from selfsup.losses.adversarial import fooling_loss
from selfsup.methods.base import METHODS, MethodConfig
from selfsup.methods.base.adversarial import AdversarialMethod
from selfsup.nets.decoders import ImageDecoder
from selfsup.nets.heads import Discriminator
from selfsup.views.basic import to_float
from selfsup.views.masks import central_block_mask, random_block_mask, random_region_mask

MASKS = ("central", "random_block", "random_region")


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
class Inpainting(AdversarialMethod):
    name = "inpainting"
    Config = InpaintingConfig
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

    def fakes(self, images: Tensor) -> Tensor:
        """What the discriminator judges: the prediction pasted into the hole of the real image."""
        _, output, mask = self.inpaint(images)
        return torch.where(mask, output, images)

    def generator_loss(self, images: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        _, output, mask = self.inpaint(images)
        hidden = mask.expand_as(images)
        reconstruction = (output - images).pow(2)[hidden].mean()  # L2 over hidden pixels only
        adversarial = fooling_loss(self.discriminator, torch.where(mask, output, images))
        loss = self.config.lambda_rec * reconstruction + self.config.lambda_adv * adversarial
        return loss, {"rec_loss": reconstruction.detach(), "adv_loss": adversarial.detach()}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """8 images: the masked input, the inpainted image (prediction pasted into the hole), the truth."""
        images = to_float(batch[:8])
        masked, output, mask = self.inpaint(images)
        return {"masked": masked, "inpainted": torch.where(mask, output, images), "true": images,
                "hidden_pixels": mask.flatten(1).sum(1)}
