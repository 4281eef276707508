"""A small Vision Transformer (Dosovitskiy et al., 2021) for 28x28 images, registered as "vit_tiny".

Blocks, in order: "patch_embed" (image -> [cls] + patch tokens with fixed 2-D sine-cosine positions, as
in MAE), "block1".."blockD" (pre-norm transformer layers), "norm" (final LayerNorm). Every block is a
named stage, so `forward(x, upto="block2")` and `freeze_upto(encoder, "block2")` work as for ConvNets.
Features: the mean of the patch tokens (MAE's global-pool variant), `dim` values.
Scaled down for 2 CPU cores: dim 64, depth 4, 4 heads (ViT-Ti: 192, 12, 3); patch 4 gives 7x7 = 49
patches on 28x28 (patch 7 gives 4x4 = 16).
`encode_tokens` runs everything after the patch embedding, so MAE can feed visible tokens only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.errors import SelfSupError
from selfsup.nets.base import BlockEncoder
from selfsup.nets.registry import ENCODERS


def sincos_positions(grid: int, dim: int) -> Tensor:
    """Fixed 2-D sine-cosine position embeddings (grid*grid, dim): half the channels encode the row,
    half the column, each with sines and cosines of geometrically spaced frequencies (MAE's choice)."""
    if dim % 4:
        raise SelfSupError(f"the ViT width must be a multiple of 4 for 2-D sine-cosine positions, got {dim}")
    freqs = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    rows, cols = torch.meshgrid(torch.arange(grid, dtype=torch.float64), torch.arange(grid, dtype=torch.float64),
                                indexing="ij")

    def encode(pos: Tensor) -> Tensor:
        angles = pos.flatten()[:, None] * freqs
        return torch.cat([angles.sin(), angles.cos()], dim=1)

    return torch.cat([encode(rows), encode(cols)], dim=1).float()


def patchify(images: Tensor, patch: int) -> Tensor:
    """(N, C, H, W) -> (N, L, patch*patch*C), patches in raster order, pixels row-major then channel."""
    n, c, h, w = images.shape
    x = images.view(n, c, h // patch, patch, w // patch, patch)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // patch) * (w // patch), patch * patch * c)


def unpatchify(patches: Tensor, patch: int, channels: int) -> Tensor:
    """The inverse of `patchify` for square images."""
    n, length, _ = patches.shape
    grid = int(round(length ** 0.5))
    x = patches.view(n, grid, grid, patch, patch, channels)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, channels, grid * patch, grid * patch)


class PatchEmbed(nn.Module):
    """Linear projection of non-overlapping patches plus fixed positions; prepends the class token."""

    def __init__(self, in_channels: int, image_size: int, patch_size: int, dim: int):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        nn.init.normal_(self.cls_token, std=0.02)
        self.register_buffer("pos", sincos_positions(image_size // patch_size, dim), persistent=False)

    def patch_tokens(self, images: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, L, dim) patch tokens with their positions, no class token."""
        return self.proj(images).flatten(2).transpose(1, 2) + self.pos

    def with_cls(self, tokens: Tensor) -> Tensor:
        return torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)  # shape[0], not len(): exports keep the batch size free

    def forward(self, images: Tensor) -> Tensor:
        return self.with_cls(self.patch_tokens(images))


class TransformerBlock(nn.Module):
    """Pre-norm transformer layer: x + attention(LN(x)), then x + MLP(LN(x)) with GELU."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        if dim % heads:
            raise SelfSupError(f"ViT width {dim} is not divisible by {heads} heads")
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def attention(self, x: Tensor) -> Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(x).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        mixed = F.scaled_dot_product_attention(q, k, v)  # (N, heads, L, dim/heads)
        return self.out(mixed.transpose(1, 2).reshape(n, length, dim))

    def forward(self, x: Tensor) -> Tensor:
        x = x + self.attention(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def init_transformer(module: nn.Module) -> None:
    """MAE/timm initialisation: Xavier-uniform linear weights, zero biases, unit LayerNorms."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@ENCODERS.register("vit_tiny")
class ViT(BlockEncoder):
    def __init__(self, in_channels: int = 1, image_size: int = 28, patch_size: int = 4, dim: int = 64,
                 depth: int = 4, heads: int = 4, mlp_ratio: float = 4.0):
        super().__init__()
        if image_size % patch_size:
            raise SelfSupError(f"ViT patch size {patch_size} does not divide the image size {image_size}; "
                               f"use a divisor such as 4 or 7 for 28x28 images")
        self.input_shape = (in_channels, image_size, image_size)
        self.patch_size, self.dim = patch_size, dim
        self.num_patches = (image_size // patch_size) ** 2
        blocks: dict[str, nn.Module] = {"patch_embed": PatchEmbed(in_channels, image_size, patch_size, dim)}
        for i in range(depth):
            blocks[f"block{i + 1}"] = TransformerBlock(dim, heads, mlp_ratio)
        blocks["norm"] = nn.LayerNorm(dim)
        self.blocks = nn.ModuleDict(blocks)
        init_transformer(self)
        w = self.blocks["patch_embed"].proj.weight  # MAE: initialise the patch projection like a linear layer
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))

    def pool(self, x: Tensor) -> Tensor:
        return x[:, 1:].mean(dim=1)  # average of the patch tokens; the class token is left out

    def encode_tokens(self, tokens: Tensor) -> Tensor:
        """Run every block after the patch embedding on (N, 1 + K, dim) tokens (any K patches)."""
        for name, block in self.blocks.items():
            if name != "patch_embed":
                tokens = block(tokens)
        return tokens
