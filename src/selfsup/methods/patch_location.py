"""Relative patch location: predict where a neighbour patch sits around a centre patch (8 ways).

Doersch, Gupta & Efros, "Unsupervised Visual Representation Learning by Context Prediction", ICCV 2015.
Kept from the paper: a centre patch and one of its 8 neighbours on a 3x3 grid, a gap between patches
and a random jitter of every patch (so edges cannot be continued and textures not matched across the
border), a siamese encoder with tied weights, the two feature vectors concatenated and classified 8
ways; on colour input, colour dropping against chromatic aberration (one random channel kept per patch,
the other two replaced by noise of 1/100 of that channel's std).
Deviations (28x28 images): patches of 7 pixels, gap 2, jitter up to 1 pixel (paper: 96, 48 and 7 on
~400x400 photos), a 256-unit joint layer (paper fc7: 4096 units); Adam instead of SGD.
At evaluation the shared patch encoder sees the whole image (`TileEncoder` keeps the feature size).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.classification import cross_entropy_and_accuracy
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets.tiles import TileEncoder
from selfsup.views.basic import to_float
from selfsup.views.patches import NEIGHBOUR_OFFSETS, crop_patches, drop_colours, patch_pair_positions


@dataclass
class PatchLocationConfig(MethodConfig):
    patch: int = 7  # paper: 96 pixels; a 3x3 layout of 7-pixel patches fits 28x28 with the gap and jitter
    gap: int = 2  # paper: 48 (half a patch); scaled with the patch
    jitter: int = 1  # paper: up to 7 pixels; scaled with the patch
    colour_dropping: bool = True  # only acts on 3-channel input
    hidden: int = 256  # joint fc (paper fc7: 4096), scaled down
    lr: float = 1e-3  # Adam; the paper used SGD


def layout_picture(centre: Tensor, neighbour: Tensor, position: Tensor, border: int = 1) -> Tensor:
    """A 3x3 canvas with the centre patch in the middle and the neighbour at `position` (0..7), as a
    picture in [0, 1]: (N, C, p, p) patches -> (N, C, 3(p+border), 3(p+border)); empty cells stay black."""
    n, c, p, _ = centre.shape
    s = p + border
    canvas = torch.zeros(n, 9, c, s, s, device=centre.device)
    cell = torch.tensor([3 * (r + 1) + (k + 1) for r, k in NEIGHBOUR_OFFSETS], device=centre.device)[position]
    rows = torch.arange(n, device=centre.device)
    canvas[:, 4, :, :p, :p] = centre
    canvas[rows, cell, :, :p, :p] = neighbour
    return canvas.view(n, 3, 3, c, s, s).permute(0, 3, 1, 4, 2, 5).reshape(n, c, 3 * s, 3 * s).clamp(0, 1)


@METHODS.register("patch-location")
class PatchLocation(Method):
    name = "patch-location"
    Config = PatchLocationConfig
    default_epochs = 40  # 1.5 s CPU per 20k-image epoch: ~1-1.5 min on 2 cores

    def __init__(self, config: PatchLocationConfig, spec: DataSpec):
        super().__init__(config, spec)
        span = 3 * config.patch + 2 * config.gap + 2 * config.jitter
        if span > min(spec.height, spec.width):
            raise SelfSupError(f"patch {config.patch}, gap {config.gap} and jitter {config.jitter} need {span} "
                               f"pixels but images are {spec.height}x{spec.width}; lower them")
        inner = self.configured_encoder()
        self.encoder = TileEncoder(inner)  # one tower, used for both patches: the tied siamese weights
        self.head = nn.Sequential(nn.Linear(2 * self.encoder.feature_dim(), config.hidden), nn.ReLU(inplace=True),
                                  nn.Linear(config.hidden, 8))

    def make_pairs(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Centre patches (N, C, p, p), neighbour patches (N, C, p, p) and the neighbour's position (N,)."""
        c = self.config
        n, _, h, w = images.shape
        tops, lefts, labels = patch_pair_positions(n, min(h, w), c.patch, c.gap, c.jitter, images.device)
        pairs = crop_patches(images, tops, lefts, c.patch)
        if c.colour_dropping:
            pairs = drop_colours(pairs)
        return pairs[:, 0], pairs[:, 1], labels

    def classify(self, centre: Tensor, neighbour: Tensor) -> Tensor:
        features = self.encoder(torch.cat([centre, neighbour]))  # both patches in one pass of one tower
        return self.head(torch.cat(features.chunk(2), dim=1))

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        centre, neighbour, labels = self.make_pairs(to_float(batch))
        loss, accuracy = cross_entropy_and_accuracy(self.classify(centre, neighbour), labels)
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """8 patch pairs laid out at the true and at the predicted neighbour position, beside the image."""
        images = to_float(batch[:8])
        centre, neighbour, labels = self.make_pairs(images)
        predicted = self.classify(centre, neighbour).argmax(1)
        return {"image": images, "true_layout": layout_picture(centre, neighbour, labels),
                "predicted_layout": layout_picture(centre, neighbour, predicted),
                "true_position": labels, "predicted_position": predicted}
