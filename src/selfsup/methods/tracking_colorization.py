"""Tracking emerges by colourising videos: predict a grey frame's colours by pointing into a colour frame.

Vondrick, Shrivastava, Fathi, Guadarrama & Murphy, "Tracking Emerges by Colorizing Videos", ECCV 2018.
Both frames are embedded per pixel (f_i for target pixel i, f_j for reference pixel j) by the same
network on grey input; the pointer A_ij = exp(f_i . f_j) / sum_k exp(f_i . f_k) (softmax over the
reference pixels) copies the reference's quantised colours: y_i = sum_j A_ij c_j, trained with
cross-entropy against the target's true quantised colour. Since the only way to get a colour right is
to point at the same object in the reference, the embedding learns correspondence; downstream the same
attention propagates object masks with no further training (`selfsup.evaluate.propagation`).
`encoder` (what transfers: linear probe, kNN, fine-tuning) is the configured encoder cut after the two
blocks the embedding reads (the ConvNet's conv1 and conv2, so features are conv2's output): a later block
would get no gradient from the colourisation loss and hand downstream untrained, random features.

Deviations: sprite clips whose objects each have one palette colour, so colour is quantised to the
nearest of the 6 palette hues (the data's `spec.palette`) + black (the paper: 16 k-means clusters of
Lab ab); grey input is the exact intensity (max over RGB); one reference frame 1..`max_gap` frames
earlier (the paper: three previous frames); the per-pixel embedding is a hypercolumn of the convnet's
first two blocks at 1/4 resolution (the paper: ResNet-18 + 3D convs at 1/8 resolution); Adam 1e-3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets import BlockEncoder
from selfsup.views import to_float
from selfsup.views.frames import first_frame_if_clip


@dataclass
class TrackingColorizationConfig(MethodConfig):
    embed_dim: int = 64  # per-pixel embedding (paper: 64)
    temperature: float = 1.0  # softmax over plain dot products while training (paper); lower sharpens
    max_gap: int = 3  # reference 1..max_gap frames before the target (ours; paper used the 3 frames before)
    dark_threshold: float = 0.1  # cells darker than this are the "background" colour class


HYPERCOLUMN_BLOCKS = 2  # the per-pixel embedding reads the encoder's first two blocks; the rest is dropped


def trained_blocks_only(encoder: nn.Module, keep: int = HYPERCOLUMN_BLOCKS) -> BlockEncoder:
    """`encoder` with only its first `keep` blocks, so that its output (and `feature_dim`) is that of the
    last kept block: the blocks after it would never be trained by the colourisation loss."""
    if not isinstance(encoder, BlockEncoder) or len(encoder.block_names) < keep:
        raise SelfSupError(f"tracking-colorization needs a block encoder with at least {keep} blocks for its "
                           f"hypercolumn, got {type(encoder).__name__}: use encoder='convnet'")
    for name in encoder.block_names[keep:]:
        del encoder.blocks[name]
    return encoder


def to_gray(frames: Tensor) -> Tensor:
    """Grey intensity of float frames (..., C, H, W): the max over colour channels (exact for the sprites,
    whose colours have max component 1), so colour cannot leak into the grey input through luminance."""
    return frames.amax(dim=-3, keepdim=True) if frames.shape[-3] == 3 else frames


def quantize_colors(frames: Tensor, size: tuple[int, int], palette: Tensor, dark_threshold: float = 0.1) -> Tensor:
    """(N, h*w) colour class per feature cell: 0 for dark cells, else 1 + nearest hue of `palette` (K, 3).

    Cells are area-averaged to `size`; hue is the colour divided by its max component (brightness free).
    """
    pooled = F.adaptive_avg_pool2d(frames, size)  # (N, 3, h, w)
    brightness = pooled.amax(dim=1, keepdim=True)
    hue = (pooled / brightness.clamp_min(1e-6)).flatten(2).transpose(1, 2)  # (N, h*w, 3)
    nearest = torch.cdist(hue, palette.to(frames.device).expand(len(frames), -1, -1)).argmin(-1) + 1
    return torch.where(brightness.flatten(1) < dark_threshold, torch.zeros_like(nearest), nearest)


def pointer_attention(target: Tensor, reference: Tensor, temperature: float = 1.0) -> Tensor:
    """A (N, P_target, P_reference) from embeddings (N, D, h, w): softmax over reference pixels of f_i . f_j."""
    t, r = target.flatten(2), reference.flatten(2)  # (N, D, P)
    return torch.softmax(t.transpose(1, 2) @ r / temperature, dim=-1)


def copy_colors(attention: Tensor, reference_classes: Tensor, num_classes: int) -> Tensor:
    """(N, P_target, num_classes) predicted colour distribution: attention-weighted one-hot reference colours."""
    return attention @ F.one_hot(reference_classes, num_classes).float()


def reference_and_target(frames: int, n: int, max_gap: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """Frame indices (N,), (N,): a target t >= 1 and a reference r in [t - max_gap, t - 1], r >= 0."""
    target = torch.randint(1, frames, (n,), device=device)
    gap = torch.randint(1, max_gap + 1, (n,), device=device)
    return (target - gap).clamp_min(0), target


def _drop_untrained_blocks(method: "TrackingColorization", state_dict: dict, prefix: str, *_) -> None:
    """Checkpoints saved before the encoder was cut after its hypercolumn blocks hold the later blocks too,
    never trained (no gradient reached them): drop them, so those checkpoints still load strictly."""
    blocks = f"{prefix}encoder.blocks."
    for key in [k for k in state_dict if k.startswith(blocks)]:
        if key[len(blocks):].split(".", 1)[0] not in method.encoder.blocks:
            del state_dict[key]


@METHODS.register("tracking-colorization")
class TrackingColorization(Method):
    name = "tracking-colorization"
    modality = "video"
    Config = TrackingColorizationConfig
    default_data = "sprites-color"
    default_epochs = 10
    default_batch_size = 32

    def __init__(self, config: TrackingColorizationConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = trained_blocks_only(self.configured_encoder(in_channels=1))
        self.hypercolumn_blocks = self.encoder.block_names  # every block the encoder keeps
        maps = self._block_outputs(torch.zeros(1, 1, spec.height, spec.width))
        if any(m.dim() != 4 for m in maps):
            raise SelfSupError(f"tracking-colorization needs conv feature maps (N, C, h, w) from its encoder's "
                               f"blocks {self.hypercolumn_blocks}; {config.encoder!r} gives tokens: use "
                               f"encoder='convnet'")
        channels = sum(m.shape[1] for m in maps)
        self.embed = nn.Conv2d(channels, config.embed_dim, kernel_size=1)
        # The colours objects are drawn in come with the data (the sprite source's palette), not from here.
        self.palette = torch.tensor(spec.palette, dtype=torch.float32).view(-1, 3)
        self.num_colors = 1 + len(self.palette)
        self.register_load_state_dict_pre_hook(_drop_untrained_blocks)

    def encoder_input(self, batch: Tensor) -> Tensor:
        """Downstream the encoder sees grey frames: the first frame of a clip batch, or grey images."""
        return to_gray(to_float(first_frame_if_clip(batch)))

    def _block_outputs(self, gray: Tensor) -> list[Tensor]:
        outputs, x = [], gray
        for name in self.hypercolumn_blocks:
            x = self.encoder.blocks[name](x)
            outputs.append(x)
        return outputs

    def embeddings(self, frames: Tensor) -> Tensor:
        """Per-pixel embeddings (N, D, H/4, W/4) of float frames (N, C, H, W): grey first, then a
        hypercolumn of the encoder's two blocks (the coarser one upsampled) and a 1x1 conv."""
        first, second = self._block_outputs(to_gray(frames))
        second = F.interpolate(second, size=first.shape[-2:], mode="bilinear", align_corners=False)
        return self.embed(torch.cat([first, second], dim=1))

    def attention(self, reference: Tensor, target: Tensor, temperature: float | None = None) -> Tensor:
        """A (N, P_target, P_reference) between float frames (N, C, H, W): what propagation uses."""
        return pointer_attention(self.embeddings(target), self.embeddings(reference),
                                 self.config.temperature if temperature is None else temperature)

    def colorize(self, clips: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """For one (reference, target) pair per clip: predicted colour distribution (N, P, colours),
        true target colour classes (N, P), the reference and target frames (N, C, H, W)."""
        if not len(self.palette):
            raise SelfSupError("tracking-colorization learns from clips drawn in a fixed palette, and this data's "
                               "spec names none: pretrain on 'sprites-color'")
        n = len(clips)
        r, t = reference_and_target(clips.shape[1], n, self.config.max_gap, clips.device)
        rows = torch.arange(n, device=clips.device)
        reference, target = clips[rows, r], clips[rows, t]
        reference_emb, target_emb = self.embeddings(reference), self.embeddings(target)
        size = tuple(target_emb.shape[-2:])
        reference_classes = quantize_colors(reference, size, self.palette, self.config.dark_threshold)
        target_classes = quantize_colors(target, size, self.palette, self.config.dark_threshold)
        attention = pointer_attention(target_emb, reference_emb, self.config.temperature)
        return copy_colors(attention, reference_classes, self.num_colors), target_classes, reference, target

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        predicted, truth, _, _ = self.colorize(to_float(batch))
        loss = F.nll_loss(predicted.clamp_min(1e-8).log().flatten(0, 1), truth.flatten())
        hit = predicted.argmax(-1) == truth
        foreground = truth > 0
        return loss, {"pretext_acc": hit.float().mean(),
                      "foreground_acc": (hit & foreground).sum() / foreground.sum().clamp_min(1)}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """Eight pairs: colour reference, grey target, predicted and true colours, and where the brightest
        target cell points in the reference (its attention map, scaled to [0, 1])."""
        clips = to_float(batch[:8])
        predicted, truth, reference, target = self.colorize(clips)
        h = w = int(predicted.shape[1] ** 0.5)
        palette = torch.cat([torch.zeros(1, 3), self.palette]).to(clips.device)
        render = lambda classes: F.interpolate(palette[classes].view(len(clips), h, w, 3).permute(0, 3, 1, 2),
                                               size=clips.shape[-2:], mode="nearest")
        attention = self.attention(reference, target)
        brightest = F.adaptive_avg_pool2d(to_gray(target), (h, w)).flatten(1).argmax(1)
        focus = attention[torch.arange(len(clips)), brightest].view(-1, 1, h, w)
        focus = F.interpolate(focus / focus.amax(dim=(2, 3), keepdim=True), size=clips.shape[-2:], mode="nearest")
        return {"reference": reference, "target_gray": to_gray(target).expand(-1, 3, -1, -1),
                "predicted_colors": render(predicted.argmax(-1)), "true_colors": render(truth),
                "attention_of_brightest_cell": focus}
