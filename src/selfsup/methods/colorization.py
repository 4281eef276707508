"""Colorization: predict the distribution over quantised ab colours of every pixel from its lightness L.

Zhang, Isola & Efros, "Colorful Image Colorization", ECCV 2016. Kept from the paper: exact CIE Lab;
the encoder sees only L; each output pixel is classified over the in-gamut ab bins of a grid of size 10;
targets are soft-encoded (5 nearest bins, Gaussian sigma 5); the cross-entropy of each pixel is weighted by
class rebalancing w ∝ ((1-λ)p̃ + λ/Q)^-1, λ = 0.5, p̃ the Gaussian-smoothed (sigma 5) empirical prior;
predictions at 1/4 of the input resolution against ab sampled every 4th pixel; pictures decoded with the
annealed mean at T = 0.38 and the ab upsampled onto the full-resolution L.
Deviations:
- 225 bins, not 313: our bins are those whose centre colour is in the sRGB gamut at some L, computed from
  the gamut itself (the paper's 313 came from its own hull of the ab space).
- The prior p̃ is counted online from the training batches seen so far (a buffer saved with the model),
  not in a pass over the data set before training.
- The network is our small block encoder (default ConvNet 64-32-16 on 32x32 patches) plus a small
  decoder (two 3x3 convs of 32 channels, bilinear upsampling to 1/4 resolution, 1x1 conv to the bins),
  not the paper's 22-layer VGG-style net; Adam lr 1e-3 (paper 3e-5 with weight decay 1e-3) for the short
  CPU budget; the per-pixel loss is averaged over pixels instead of summed.
Downstream input: a colour image gives its L; a grayscale image (Fashion-MNIST) gives the L of its gray
sRGB colour, centre-padded with black (L = 0) or cropped to the pretraining size, so probes on 28x28
images see the 32x32 geometry the encoder was trained on.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.classification import soft_cross_entropy
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets.base import spatial_maps
from selfsup.nets.decoders import color_decoder
from selfsup.views.basic import to_float
from selfsup.views.color import (ab_grid, annealed_mean, encode_ab, gaussian_kernel, lab_to_rgb, lightness,
                                 rebalancing_weights, require_colour, rgb_to_lab, smoothed_prior, subsample,
                                 subsampled_size, upsample_like)
from selfsup.views.geometry import fit_to_size


@dataclass
class ColorizationConfig(MethodConfig):
    grid_size: float = 10.0  # ab bin size (paper)
    neighbours: int = 5  # soft encoding over the 5 nearest bins (paper)
    sigma: float = 5.0  # Gaussian of the soft encoding and of the prior smoothing (paper)
    rebalance: float = 0.5  # λ, mix of the prior with the uniform distribution (paper)
    temperature: float = 0.38  # annealed-mean decoding (paper)
    output_stride: int = 4  # predictions at 1/4 resolution (paper)
    decoder_width: int = 32  # scaled down from the paper's 256/512-channel layers for 2 CPU cores
    lr: float = 1e-3  # Adam; the paper used 3e-5 with a much longer schedule


def lightness_input(batch: Tensor, spec: DataSpec) -> Tensor:
    """Raw images (colour or gray) -> L / 100 in [0, 1], (N, 1, H, W), at the pretraining size."""
    return fit_to_size(lightness(to_float(batch)) / 100, spec.height, spec.width)


@METHODS.register("colorization")
class Colorization(Method):
    name = "colorization"
    Config = ColorizationConfig
    default_data = "photos"
    default_epochs = 6  # 6 x 79 steps of 256 patches; a step costs ~0.37 s of one core, so ~3 min in all
    default_batch_size = 256

    def __init__(self, config: ColorizationConfig, spec: DataSpec):
        super().__init__(config, spec)
        require_colour(spec.channels, self.name)
        self.encoder = self.configured_encoder(in_channels=1)  # it sees lightness only
        self.register_buffer("centres", ab_grid(config.grid_size))  # (Q, 2) ab bin centres
        # Online prior (hard counts), float64 so that millions of counts stay exact.
        self.register_buffer("bin_counts", torch.zeros(len(self.centres), dtype=torch.float64))
        # The Gaussian that smooths the prior, built once: it only depends on the fixed bin centres.
        self.register_buffer("prior_kernel", gaussian_kernel(self.centres, config.sigma), persistent=False)
        with torch.no_grad():
            channels = spatial_maps(self.encoder.eval(), torch.zeros(2, 1, spec.height, spec.width)).shape[1]
        self.encoder.train()
        self.decoder = color_decoder(channels, config.decoder_width, len(self.centres),
                                     subsampled_size(spec.height, spec.width, config.output_stride))

    # --- views and targets --------------------------------------------------------------------
    def encoder_input(self, batch: Tensor) -> Tensor:
        """The L channel of Lab colour / 100, (N, 1, H, W) at the pretraining size: the encoder never sees colour."""
        return lightness_input(batch, self.spec)

    def predict(self, lightness_in: Tensor) -> Tensor:
        """L / 100 (N, 1, H, W) -> ab bin logits (N, Q, H/4, W/4)."""
        return self.decoder(spatial_maps(self.encoder, lightness_in))

    def targets(self, lab: Tensor) -> tuple[Tensor, Tensor]:
        """Soft-encoded ab targets (N, Q, H/4, W/4) of the pixels sampled every `output_stride`, and the
        nearest bin of each (N, H/4, W/4)."""
        return encode_ab(subsample(lab[:, 1:], self.config.output_stride), self.centres,
                         self.config.neighbours, self.config.sigma)

    @torch.no_grad()
    def count_bins(self, nearest: Tensor) -> None:
        self.bin_counts += torch.bincount(nearest.flatten(), minlength=len(self.centres)).to(self.bin_counts)

    def pixel_weights(self, nearest: Tensor) -> Tensor:
        """Class-rebalancing weight of each pixel, w of its nearest bin under the current prior."""
        prior = smoothed_prior(self.bin_counts, self.prior_kernel)
        return rebalancing_weights(prior, self.config.rebalance).float()[nearest]

    # --- the contract -------------------------------------------------------------------------
    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        if batch.shape[1] != 3:
            raise SelfSupError(f"colorization needs colour (3-channel) batches, got {batch.shape[1]} channel(s)")
        lab = rgb_to_lab(to_float(batch))
        targets, nearest = self.targets(lab)  # (N, Q, h, w) soft targets, (N, h, w) the true bin
        if self.training:
            self.count_bins(nearest)
        logits = self.predict(fit_to_size(lab[:, :1] / 100, self.spec.height, self.spec.width))
        cross_entropy = soft_cross_entropy(logits, targets)  # (N, h, w)
        loss = (self.pixel_weights(nearest) * cross_entropy).mean()
        accuracy = (logits.argmax(1) == nearest).float().mean()
        return loss, {"pretext_acc": accuracy, "unweighted_ce": cross_entropy.mean().detach()}

    @torch.no_grad()
    def colorize(self, batch: Tensor) -> Tensor:
        """Colour pictures in [0, 1] (N, 3, H, W): the input's own L with the annealed-mean ab prediction."""
        lightness_in = lightness_input(batch, self.spec)
        ab = annealed_mean(self.predict(lightness_in), self.centres, self.config.temperature)
        return lab_to_rgb(torch.cat([lightness_in * 100, upsample_like(ab, lightness_in.shape[-2:])], dim=1))

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 8 images as the network sees them (gray), colorized, and as they truly are."""
        batch = batch[:8]
        gray = lightness_input(batch, self.spec)
        gray_rgb = lab_to_rgb(torch.cat([gray * 100, torch.zeros_like(gray).expand(-1, 2, -1, -1)], dim=1))
        true = fit_to_size(to_float(batch), self.spec.height, self.spec.width)
        return {"grayscale": gray_rgb, "colorized": self.colorize(batch), "true": true}
