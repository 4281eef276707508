"""CPC for images: predict the embeddings of patches k rows below from a context of the rows above.

van den Oord, Li & Vinyals, "Representation Learning with Contrastive Predictive Coding", 2018 (section
3.2, images). Each image is cut into a grid of overlapping patches; a patch encoder embeds every patch
(z, a G x G grid); an autoregressive context network over the rows (masked convolutions: the context at
row i sees rows <= i only) gives c; a linear map W_k per offset predicts z at row i + k, same column, from
c at row i. InfoNCE scores each prediction against every patch embedding at that offset in the batch:
the true one is the positive, the other patches of the same image and of the other images are the
negatives. Only offsets whose target patch shares no pixel with the context are predicted (`offsets`:
k <= `prediction_steps` with k * stride >= patch_size, so k >= 2 for half-overlapping patches): the
patch one row below overlaps row i by half, and predicting it could copy pixels the context has seen.
Henaff et al. 2019 (CPC v2) skip the nearest rows for the same reason (their code: offset 3 only).
`encoder` (what transfers) is the patch encoder applied to the grid and mean-pooled over patches, as in
the paper's linear evaluation.

Deviations (28x28 grayscale, 2 CPU cores):
- Grid: 8x8 patches with stride 4 (6x6 grid) instead of 64x64 patches with stride 32 on 256x256 (7x7);
  predictions k = 2..4 rows ahead instead of up to 5. Half-overlapping patches kept, k = 1 skipped, rather
  than non-overlapping 7x7 patches: their 4x4 grid leaves 3, 2, 1 query rows for k = 1..3, ours 4, 3, 2.
- Patch encoder: the ConvNet (widths 32-32-64, no BatchNorm, as Henaff et al. 2019 found BatchNorm leaks
  information between patches) instead of ResNet-v2-101; context: 2 row-causal 3x3 conv layers of 32
  channels with residuals (PixelCNN-style masking along rows only) instead of a PixelCNN.
- Adam lr 1e-3 instead of the paper's 2e-4: with a small patch encoder started from small features, 2e-4
  moved the loss 0.2 nats in 80 Fashion-MNIST steps (batch 32, mean of the first vs last 5), 1e-3 0.8.
- Batch 32 by default: in-batch negatives make the logits M x M with M = batch x (G - k) x G (768 at k=2),
  the largest cost per image; at batch 64 they cost more than the patch encoder.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.contrastive import info_nce
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets import BlockEncoder, build_encoder
from selfsup.views.basic import to_float


def _patch_encoder_kwargs() -> dict:
    return {"batch_norm": False, "widths": (32, 32, 64)}  # 64-d per 8x8 patch


@dataclass
class CPCConfig(MethodConfig):
    encoder_kwargs: dict = field(default_factory=_patch_encoder_kwargs)
    lr: float = 1e-3  # Adam; the paper's 2e-4 learns ~4x slower from our small init (80-step check)
    patch_size: int = 8  # the paper: 64 of 256 px
    patch_stride: int = 4  # half-overlapping patches, as in the paper
    # The farthest row offset K predicted; offsets k < patch_size / patch_stride (k = 1 here) are skipped,
    # as their target overlaps the context. The paper: up to 5 rows ahead on a 7x7 grid.
    prediction_steps: int = 4
    context_dim: int = 32
    context_layers: int = 2
    temperature: float = 1.0  # plain dot products exp(z^T W_k c), as in the paper


class PatchGridEncoder(BlockEncoder):
    """Images (N, C, H, W) -> a grid of patch embeddings (N, G, G, D) -> their mean over the grid (N, D).

    `blocks` are the patch encoder's blocks, so features can be read from, and frozen up to, any block.
    """

    def __init__(self, patch_encoder: BlockEncoder, image_shape: tuple[int, int, int], patch_size: int,
                 stride: int):
        super().__init__()
        self.blocks = patch_encoder.blocks
        self.input_shape = image_shape
        self.patch_size, self.stride = patch_size, stride

    @property
    def grid_size(self) -> int:
        return (self.input_shape[-1] - self.patch_size) // self.stride + 1

    def patches(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, G, G, C, p, p), row-major grid of overlapping patches."""
        p, s = self.patch_size, self.stride
        return x.unfold(2, p, s).unfold(3, p, s).permute(0, 2, 3, 1, 4, 5)

    def patch_features(self, x: Tensor, upto: str | None = None) -> Tensor:
        self.check_block(upto)
        grid = self.patches(x)
        n, g = grid.shape[0], grid.shape[1]
        h = grid.reshape(n * g * g, *grid.shape[3:])
        for name, block in self.blocks.items():
            h = block(h)
            if name == upto:
                break
        return h.flatten(1).view(n, g, g, -1)

    def forward(self, x: Tensor, upto: str | None = None) -> Tensor:
        return self.patch_features(x, upto).mean(dim=(1, 2))

    def _dims(self) -> dict[str, int]:
        if not hasattr(self, "_dims_cache"):
            was_training = self.training
            self.eval()
            with torch.no_grad():
                x = torch.zeros(1, *self.input_shape)
                dims = {name: self.forward(x, upto=name).shape[1] for name in self.block_names}
            self.train(was_training)
            object.__setattr__(self, "_dims_cache", dims)
        return self._dims_cache


class RowCausalConv(nn.Module):
    """3x3 convolution whose output at row i sees input rows i-2..i only (zero padding above, none below)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.pad(x, (1, 1, 2, 0)))  # (left, right, top, bottom)


class RowContext(nn.Module):
    """The autoregressive context over rows: z (N, D, G, G) -> c (N, H, G, G), c[:, :, i] from rows <= i."""

    def __init__(self, in_dim: int, dim: int, layers: int):
        super().__init__()
        self.inp = nn.Conv2d(in_dim, dim, 1)
        self.layers = nn.ModuleList(RowCausalConv(dim) for _ in range(layers))

    def forward(self, z: Tensor) -> Tensor:
        c = self.inp(z)
        for layer in self.layers:
            c = c + layer(F.relu(c))  # residual, pre-activation
        return c


def disjoint_offsets(patch_size: int, stride: int, max_offset: int) -> tuple[int, ...]:
    """The row offsets k in 1..max_offset whose target patch (row i + k) shares no pixel row with the
    context (rows <= i): k * stride >= patch_size, since row i covers pixel rows [i s, i s + p)."""
    return tuple(k for k in range(1, max_offset + 1) if k * stride >= patch_size)


def future_pairs(prediction: Tensor, z: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Predictions made at rows 0..G-1-k and the embeddings k rows below them, same column.

    prediction, z: (N, D, G, G). Returns queries and positives (M, D), M = N (G - k) G, in matching order
    (image, row, column), so row m of the positives is the target of row m of the queries.
    """
    queries = prediction[:, :, :-k, :]
    targets = z[:, :, k:, :]
    return queries.permute(0, 2, 3, 1).flatten(0, 2), targets.permute(0, 2, 3, 1).flatten(0, 2)


def top1_accuracy(queries: Tensor, positives: Tensor) -> Tensor:
    """How often query m scores its own positive (row m) above all others; on a few queries, as the full
    M x M score matrix costs as much as the loss itself."""
    hits = (queries @ positives.T).argmax(1) == torch.arange(len(queries), device=queries.device)
    return hits.float().mean()


@METHODS.register("cpc")
class CPC(Method):
    name = "cpc"
    Config = CPCConfig
    default_epochs = 5  # an epoch costs ~1.8x RotNet's (2.6 vs 1.4 TFLOP); 5 epochs ~ RotNet's 10
    default_batch_size = 32  # in-batch negatives cost (batch x grid)^2: 768 x 768 logits at k=2

    def __init__(self, config: CPCConfig, spec: DataSpec):
        super().__init__(config, spec)
        if spec.height != spec.width or spec.height < config.patch_size:
            raise SelfSupError(f"CPC needs square images of at least patch_size={config.patch_size} pixels, "
                               f"got {spec.height}x{spec.width}")
        patch_encoder = build_encoder(config.encoder, in_channels=spec.channels, image_size=config.patch_size,
                                      **config.encoder_kwargs)
        if not isinstance(patch_encoder, BlockEncoder):
            raise SelfSupError(f"CPC needs a block encoder for its patches, got {type(patch_encoder).__name__}")
        self.encoder = PatchGridEncoder(patch_encoder, (spec.channels, spec.height, spec.width),
                                        config.patch_size, config.patch_stride)
        grid = self.encoder.grid_size
        if config.prediction_steps >= grid:
            raise SelfSupError(f"prediction_steps={config.prediction_steps} must be below the grid size {grid}")
        self.offsets = disjoint_offsets(config.patch_size, config.patch_stride, config.prediction_steps)
        if not self.offsets:
            first = -(-config.patch_size // config.patch_stride)  # the first k with k * stride >= patch_size
            fix = (f"set prediction_steps to at least {first} (below the grid size {grid})" if first < grid
                   else "use a larger patch_stride or a smaller patch_size")
            raise SelfSupError(
                f"CPC predicts only row offsets whose target patch does not overlap the context; with "
                f"patch_size={config.patch_size} and patch_stride={config.patch_stride} that needs k >= {first}, "
                f"but prediction_steps={config.prediction_steps} on a {grid}x{grid} grid leaves none: {fix}")
        dim = self.encoder.feature_dim()
        self.context = RowContext(dim, config.context_dim, config.context_layers)
        self.predictors = nn.ModuleList(nn.Conv2d(config.context_dim, dim, 1, bias=False)
                                        for _ in self.offsets)  # W_k, one per k in self.offsets

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        z = self.encoder.patch_features(to_float(batch)).permute(0, 3, 1, 2)  # (N, D, G, G)
        c = self.context(z)
        losses, accuracies = [], []
        for k, predictor in zip(self.offsets, self.predictors):
            queries, positives = future_pairs(predictor(c), z, k)
            # negatives=None: every other (image, row, column) at this offset is a negative
            losses.append(info_nce(queries, positives, None, temperature=self.config.temperature, normalize=False))
            accuracies.append(top1_accuracy(queries.detach()[:256], positives.detach()))
        loss = torch.stack(losses).mean()
        metrics = {f"acc_k{k}": acc for k, acc in zip(self.offsets, accuracies)}
        return loss, {"pretext_acc": torch.stack(accuracies).mean(), **metrics}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """The first 2 images and their patch grids (row-major, G x G patches per image)."""
        images = to_float(batch[:2])
        patches = self.encoder.patches(images).flatten(0, 2)  # (2 G G, C, p, p)
        return {"images": images, "patches": patches}
