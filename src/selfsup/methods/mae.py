"""MAE: predict the pixels of randomly masked image patches from the visible ones.

He, Chen, Xie, Li, Dollár & Girshick, "Masked Autoencoders Are Scalable Vision Learners", CVPR 2022.
Kept from the paper: 75% of the patches hidden by per-sample random shuffling; the ViT encoder sees the
visible patches only (no mask tokens); a light transformer decoder gets the encoded visible tokens plus
a shared learned mask token at every hidden position, with fixed sine-cosine positions; the MSE loss
counts hidden patches only; optional per-patch normalised pixel targets (on by default, as the paper's
best setting); AdamW with weight decay 0.05.
Deviations (28x28 images, 2 CPU cores):
- encoder "vit_tiny" with patch size 4 (7x7 = 49 patches; 12 stay visible), width 64, depth 4
  (paper: ViT-B/16 and larger on 224x224);
- decoder width 48, depth 2, 3 heads (paper: 512, 8, 16);
- lr 2e-3 for short runs (paper: 1.5e-4 * batch/256 for 800+ epochs; 2e-3 beat 1e-3 on validation:
  `benchmarks/results/tuning.md`); AdamW betas (0.9, 0.95) as in the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets.vit import TransformerBlock, ViT, init_transformer, patchify, sincos_positions, unpatchify
from selfsup.views.basic import to_float
from selfsup.views.masks import random_patch_mask


def patch_targets(images: Tensor, patch: int, normalise: bool) -> Tensor:
    """Pixel targets (N, L, patch*patch*C), optionally normalised to zero mean, unit variance per patch."""
    target = patchify(images, patch)
    if normalise:
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1e-6).sqrt()
    return target


def masked_patch_loss(prediction: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean squared error per patch, averaged over the hidden patches only (mask True = hidden)."""
    per_patch = (prediction - target).pow(2).mean(dim=-1)  # (N, L)
    weights = mask.float()
    return (per_patch * weights).sum() / weights.sum()


@dataclass
class MAEConfig(MethodConfig):
    encoder: str = "vit_tiny"  # patch 4 on 28x28; pass encoder_kwargs={"patch_size": 7} for 16 patches
    mask_ratio: float = 0.75
    decoder_dim: int = 48  # paper: 512; scaled down
    decoder_depth: int = 2  # paper: 8; scaled down
    decoder_heads: int = 3  # paper: 16; scaled down
    norm_pix_loss: bool = True
    optimizer: str = "adamw"
    lr: float = 2e-3  # paper: 1.5e-4 * batch / 256 over 800 epochs; raised for ~10-epoch runs, tuned (tuning.md)
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)  # the paper's AdamW betas
    warmup_epochs: float = 1.0  # paper: 40 of 800; scaled with the run


@METHODS.register("mae")
class MAE(Method):
    name = "mae"
    Config = MAEConfig
    default_epochs = 6  # 31 s CPU per 20k-image epoch: ~2-3 min (paper: 800+ epochs)

    def __init__(self, config: MAEConfig, spec: DataSpec):
        super().__init__(config, spec)
        if not 0.0 < config.mask_ratio < 1.0:
            raise SelfSupError(f"mask_ratio must be in (0, 1), got {config.mask_ratio}")
        self.encoder = self.configured_encoder()
        if not isinstance(self.encoder, ViT):
            raise SelfSupError(f"MAE needs a ViT encoder (e.g. 'vit_tiny'), got {config.encoder!r}")
        self.patch = self.encoder.patch_size
        grid = spec.height // self.patch
        self.decoder_embed = nn.Linear(self.encoder.dim, config.decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.decoder_dim))
        self.register_buffer("decoder_pos", sincos_positions(grid, config.decoder_dim), persistent=False)
        self.decoder = nn.Sequential(*[TransformerBlock(config.decoder_dim, config.decoder_heads)
                                       for _ in range(config.decoder_depth)], nn.LayerNorm(config.decoder_dim))
        self.to_pixels = nn.Linear(config.decoder_dim, self.patch * self.patch * spec.channels)
        init_transformer(self.decoder)
        nn.init.xavier_uniform_(self.decoder_embed.weight)
        nn.init.xavier_uniform_(self.to_pixels.weight)
        nn.init.normal_(self.mask_token, std=0.02)

    def encode_visible(self, images: Tensor, ids_keep: Tensor) -> Tensor:
        """Encoder tokens (N, 1 + K, dim) of the kept patches only, class token first."""
        embed = self.encoder.blocks["patch_embed"]
        tokens = embed.patch_tokens(images)  # positions are added before dropping patches
        visible = tokens.gather(1, ids_keep[..., None].expand(-1, -1, tokens.shape[-1]))
        return self.encoder.encode_tokens(embed.with_cls(visible))

    def decode(self, encoded: Tensor, ids_restore: Tensor) -> Tensor:
        """Pixel predictions (N, L, patch*patch*C) for every patch, from the visible tokens + mask tokens."""
        x = self.decoder_embed(encoded)
        n, length = ids_restore.shape
        hidden = self.mask_token.expand(n, length - (x.shape[1] - 1), -1)
        patches = torch.cat([x[:, 1:], hidden], dim=1)  # kept patches first, then the hidden ones
        patches = patches.gather(1, ids_restore[..., None].expand(-1, -1, x.shape[-1])) + self.decoder_pos
        x = self.decoder(torch.cat([x[:, :1], patches], dim=1))
        return self.to_pixels(x[:, 1:])  # the class token predicts nothing

    def reconstruct(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Predictions (N, L, p*p*C), targets (N, L, p*p*C) and the mask (N, L) for one random masking."""
        ids_keep, mask, ids_restore = random_patch_mask(len(images), self.encoder.num_patches,
                                                        self.config.mask_ratio, images.device)
        prediction = self.decode(self.encode_visible(images, ids_keep), ids_restore)
        return prediction, patch_targets(images, self.patch, self.config.norm_pix_loss), mask

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor]]:
        prediction, target, mask = self.reconstruct(to_float(batch))
        return masked_patch_loss(prediction, target, mask), {"mask_ratio": mask.float().mean()}

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """8 images: the visible patches (hidden ones grey), the reconstruction pasted into the visible
        patches, and the truth. Normalised-pixel predictions are mapped back with each true patch's
        mean and std (as in the paper's figures)."""
        images = to_float(batch[:8])
        prediction, _, mask = self.reconstruct(images)
        if self.config.norm_pix_loss:
            raw = patchify(images, self.patch)
            prediction = prediction * (raw.var(dim=-1, keepdim=True) + 1e-6).sqrt() + raw.mean(dim=-1, keepdim=True)
        c = images.shape[1]
        hidden = unpatchify(mask[..., None].float().expand_as(prediction), self.patch, c)
        predicted = unpatchify(prediction, self.patch, c).clamp(0, 1)
        return {"masked": torch.where(hidden.bool(), torch.full_like(images, 0.5), images),
                "reconstruction": torch.where(hidden.bool(), predicted, images),
                "true": images, "hidden_patches": mask.sum(1)}
