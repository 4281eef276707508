"""Split-brain autoencoder: one half-network predicts ab colour from L, the other L from ab.

Zhang, Isola & Efros, "Split-Brain Autoencoders: Unsupervised Learning by Cross-Channel Prediction",
CVPR 2017. Kept from the paper: the network is split channel-wise into two disjoint halves, each of half
the width; the L half classifies every pixel's ab over the colour bins of Zhang et al. 2016 (grid size 10,
soft-encoded targets), the ab half classifies every pixel's L over 100 lightness bins (hard targets: a bin
is one L unit); the two cross-channel cross-entropies are added; the representation is the concatenation
of both halves' features at every block.
Deviations:
- Halves are our small block encoders (default ConvNet 32-16-8 each, so together the default 64-32-16) on
  32x32 patches with a small decoder each (as in `colorization`), not halves of AlexNet; Adam lr 1e-3.
- Predictions at 1/4 resolution against every 4th pixel, as in colorization; no class rebalancing.
- 225 in-gamut ab bins instead of 313 (see `selfsup.views.color.ab_grid`).
Encoder input (3 channels): L / 100 in [0, 1] for the first half and ab / 110 in about [-1, 1] for the
second. A grayscale downstream image (Fashion-MNIST) gives its gray L to the L half and ab = 0 (neutral
colour) to the ab half, centre-padded with zeros (black, neutral) to the pretraining size.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.classification import soft_cross_entropy
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets import BlockEncoder
from selfsup.nets.base import spatial_maps
from selfsup.nets.decoders import color_decoder
from selfsup.views.basic import to_float
from selfsup.views.color import (ab_grid, annealed_mean, encode_ab, gray_to_lightness, lab_to_rgb, require_colour,
                                 rgb_to_lab, subsample, subsampled_size, upsample_like)
from selfsup.views.geometry import fit_to_size

AB_SCALE = 110.0  # ab / 110 puts the sRGB gamut's ab roughly in [-1, 1]


@dataclass
class SplitBrainConfig(MethodConfig):
    # Each half's encoder options: half the default ConvNet's widths, so both together match its 64-32-16.
    encoder_kwargs: dict = field(default_factory=lambda: {"widths": (32, 16, 8)})
    grid_size: float = 10.0  # ab bins (paper, following Zhang et al. 2016)
    lightness_bins: int = 100  # L bins (paper)
    neighbours: int = 5  # soft encoding of ab (Zhang et al. 2016)
    sigma: float = 5.0
    temperature: float = 0.38  # annealed-mean decoding of the example pictures
    output_stride: int = 4
    decoder_width: int = 32  # scaled down for 2 CPU cores
    lr: float = 1e-3  # Adam


class SplitBlock(nn.Module):
    """One block of each half, side by side: the first `split` input channels go to `first`, the rest to
    `second`, and the outputs are concatenated along channels (no connection crosses the halves)."""

    def __init__(self, first: nn.Module, second: nn.Module, split: int):
        super().__init__()
        self.first, self.second, self.split = first, second, split

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.first(x[:, :self.split]), self.second(x[:, self.split:])], dim=1)


class SplitBrainEncoder(BlockEncoder):
    """Two block encoders with the same block names, run side by side on (L, ab) input (N, 3, H, W).

    `forward(x, upto)` returns cat(l_half(L, upto), ab_half(ab, upto)): each half pooled its own way, then
    concatenated. The halves are not registered twice: their blocks live in the SplitBlocks.
    """

    def __init__(self, l_half: BlockEncoder, ab_half: BlockEncoder):
        super().__init__()
        if l_half.block_names != ab_half.block_names:
            raise SelfSupError("the two halves of a split-brain encoder need the same block names")
        object.__setattr__(self, "halves", (l_half, ab_half))  # plain references, not submodules
        _, height, width = l_half.input_shape
        self.input_shape = (3, height, width)
        self.l_channels = l_half_channels(l_half)  # channels of the L half after each block
        splits = [1] + list(self.l_channels.values())[:-1]  # channel split at each block's input
        self.blocks = nn.ModuleDict({name: SplitBlock(l_half.blocks[name], ab_half.blocks[name], split)
                                     for name, split in zip(l_half.block_names, splits)})

    def split_maps(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The last block's maps of the L half and of the ab half."""
        maps = spatial_maps(self, x)
        c = self.l_channels[self.block_names[-1]]
        return maps[:, :c], maps[:, c:]

    def forward(self, x: Tensor, upto: str | None = None) -> Tensor:
        self.check_block(upto)
        name = upto or self.block_names[-1]
        for block_name, block in self.blocks.items():
            x = block(x)
            if block_name == name:
                break
        l_half, ab_half = self.halves
        c = self.l_channels[name]
        return torch.cat([l_half.pool(x[:, :c]), ab_half.pool(x[:, c:])], dim=1)

    def feature_dim(self, upto: str | None = None) -> int:
        l_half, ab_half = self.halves
        return l_half.feature_dim(upto) + ab_half.feature_dim(upto)


def l_half_channels(encoder: BlockEncoder) -> dict[str, int]:
    """Output channels of every block of an encoder, from one dummy forward pass."""
    channels, was_training = {}, encoder.training
    encoder.eval()
    with torch.no_grad():
        x = torch.zeros(2, *encoder.input_shape)
        for name, block in encoder.blocks.items():
            x = block(x)
            channels[name] = x.shape[1]
    encoder.train(was_training)
    return channels


def split_input(batch: Tensor, spec: DataSpec) -> Tensor:
    """Raw images -> (L / 100, a / 110, b / 110), (N, 3, H, W) at the pretraining size; gray images get ab = 0."""
    images = to_float(batch)
    if images.shape[1] == 1:
        lab = torch.cat([gray_to_lightness(images), torch.zeros_like(images).expand(-1, 2, -1, -1)], dim=1)
    else:
        lab = rgb_to_lab(images)
    scale = lab.new_tensor([100.0, AB_SCALE, AB_SCALE]).view(1, 3, 1, 1)
    return fit_to_size(lab / scale, spec.height, spec.width)


def lightness_targets(lightness: Tensor, bins: int) -> Tensor:
    """L in [0, 100] -> bin index in [0, bins): equal-width bins over [0, 100]."""
    return (lightness * (bins / 100.0)).long().clamp(0, bins - 1)


@METHODS.register("split-brain")
class SplitBrain(Method):
    name = "split-brain"
    Config = SplitBrainConfig
    default_data = "photos"
    default_epochs = 6  # 6 x 79 steps of 256 patches; a step costs ~0.42 s of one core, so ~3.3 min in all
    default_batch_size = 256

    def __init__(self, config: SplitBrainConfig, spec: DataSpec):
        super().__init__(config, spec)
        require_colour(spec.channels, self.name)
        l_half, ab_half = self.configured_encoder(in_channels=1), self.configured_encoder(in_channels=2)
        self.encoder = SplitBrainEncoder(l_half, ab_half)
        self.register_buffer("centres", ab_grid(config.grid_size))  # (Q, 2) ab bin centres
        width = 100.0 / config.lightness_bins
        self.register_buffer("lightness_centres", (torch.arange(config.lightness_bins) + 0.5)[:, None] * width)
        last = self.encoder.block_names[-1]
        size = subsampled_size(spec.height, spec.width, config.output_stride)
        l_channels = self.encoder.l_channels[last]
        ab_channels = l_half_channels(ab_half)[last]
        self.l_to_ab = color_decoder(l_channels, config.decoder_width, len(self.centres), size)
        self.ab_to_l = color_decoder(ab_channels, config.decoder_width, config.lightness_bins, size)

    def encoder_input(self, batch: Tensor) -> Tensor:
        """Lab colour scaled to (L / 100, a / 110, b / 110) at the pretraining size; grey images get a = b = 0."""
        return split_input(batch, self.spec)

    def predict(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """(L, ab) input -> (ab bin logits from L, L bin logits from ab), each at 1/4 resolution."""
        l_maps, ab_maps = self.encoder.split_maps(x)
        return self.l_to_ab(l_maps), self.ab_to_l(ab_maps)

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if batch.shape[1] != 3:
            raise SelfSupError(f"split-brain needs colour (3-channel) batches, got {batch.shape[1]} channel(s)")
        x = self.encoder_input(batch)
        ab_logits, l_logits = self.predict(x)
        sampled = subsample(x, self.config.output_stride)
        ab_targets, nearest_ab = encode_ab(sampled[:, 1:] * AB_SCALE, self.centres, self.config.neighbours,
                                           self.config.sigma)
        l_targets = lightness_targets(sampled[:, 0] * 100, self.config.lightness_bins)
        ab_loss = soft_cross_entropy(ab_logits, ab_targets).mean()
        l_loss = F.cross_entropy(l_logits, l_targets)
        return ab_loss + l_loss, {
            "ab_loss": ab_loss.detach(), "l_loss": l_loss.detach(),
            "ab_acc": (ab_logits.argmax(1) == nearest_ab).float().mean(),
            "l_acc": (l_logits.argmax(1) == l_targets).float().mean()}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 8 images: each half's input, each half's prediction of the other channels, the truth.

        The ab input is shown at L = 50; predicted ab is shown on the true L, predicted L as gray.
        """
        x = self.encoder_input(batch[:8])
        ab_logits, l_logits = self.predict(x)
        size = x.shape[-2:]
        T = self.config.temperature
        predicted_ab = upsample_like(annealed_mean(ab_logits, self.centres, T), size)
        predicted_l = upsample_like(annealed_mean(l_logits, self.lightness_centres, T), size)
        lightness, ab = x[:, :1] * 100, x[:, 1:] * AB_SCALE
        neutral = torch.zeros_like(ab)
        return {"input_L": lab_to_rgb(torch.cat([lightness, neutral], 1)),
                "input_ab": lab_to_rgb(torch.cat([torch.full_like(lightness, 50.0), ab], 1)),
                "predicted_ab": lab_to_rgb(torch.cat([lightness, predicted_ab], 1)),
                "predicted_L": lab_to_rgb(torch.cat([predicted_l, neutral], 1)),
                "true": lab_to_rgb(torch.cat([lightness, ab], 1))}
