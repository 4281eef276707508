"""I-JEPA: predict the representations of hidden image blocks from a visible context block.

Assran, Duval, Misra, Bojanowski, Vincent, Rabbat, LeCun & Ballas, "Self-Supervised Learning from Images
with a Joint-Embedding Predictive Architecture", CVPR 2023.
Multi-block masking (section 3): per batch, 4 target blocks (scale (0.15, 0.2), aspect (0.75, 1.5)) and one
context block (scale (0.85, 1.0), square) from which the target blocks are removed (`views.masks`). The
context encoder (a ViT, the part that transfers) sees the context patches only; a target encoder, an EMA
of it with no gradient (momentum 0.996 rising linearly to 1), sees the whole image, and its layer-normalised
output at the target blocks is what is predicted. A narrow transformer predictor takes the context tokens
plus, for each target block, one shared learned mask token per target patch carrying that patch's position,
and predicts the target representations. The loss lives in representation space: smooth L1 as in the
authors' code (the paper writes L2; `distance="mse"`). No pixel reconstruction, no hand-made views beyond a
random resized crop (0.3, 1).

Deviations (28x28 grayscale, 2 CPU cores):
- Encoder "vit_tiny" with patch size 4: the patch grid is 7x7 = 49 patches (the paper: 14x14 and 16x16 grids
  of ViT-H/14 and ViT-H/16 at 224 and 448). On 7x7 a target block is 2x3, 3x2, 3x3, 4x2 or 4x3 patches
  (15-20% of 49 is 7 to 9 patches; the reference's rounding of height and width gives 6 to 12).
- A context keeps at least 4 patches (`min_context`; the reference: 10 of 196); an image whose blocks leave
  fewer draws them again (the reference relaxes the constraint instead, letting the context overlap targets).
- The class token of our ViT rides along in the context and target encoders (I-JEPA's ViT has none) so
  that downstream features come out as in pretraining; the predictor sees patch tokens only.
- Predictor width 32, depth 3, 2 heads (the paper: 384 wide, 12 deep, for a 1280-wide ViT-H).
- AdamW lr 1e-3 (the paper's peak), weight decay 0.04 constant (the paper: 0.04 -> 0.4 on a cosine), 1
  warm-up epoch (the paper: 40 of 300).
- Downstream features come from the context encoder (our contract: the trained encoder), not from the
  target encoder as in the paper's evaluations; with momentum near 1 the two are close.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.latent_prediction import latent_prediction_loss
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets.momentum import ema_update, frozen_copy
from selfsup.nets.vit import TransformerBlock, ViT, init_transformer, sincos_positions, unpatchify
from selfsup.views.augment import ViewConfig, augment
from selfsup.views.basic import to_float
from selfsup.views.masks import MultiBlockMasks, multiblock_masks


@dataclass
class IJEPAConfig(MethodConfig):
    encoder: str = "vit_tiny"
    encoder_kwargs: dict = field(default_factory=lambda: {"patch_size": 4})  # a 7x7 patch grid on 28x28
    targets: int = 4
    target_scale: tuple[float, float] = (0.15, 0.2)
    target_aspect: tuple[float, float] = (0.75, 1.5)  # height / width
    context_scale: tuple[float, float] = (0.85, 1.0)
    min_context: int = 4  # the reference: 10 of 196 patches
    crop_scale: tuple[float, float] = (0.3, 1.0)  # random resized crop, the paper's only augmentation
    predictor_dim: int = 32  # the paper: 384
    predictor_depth: int = 3  # the paper: 12
    predictor_heads: int = 2
    base_momentum: float = 0.996  # target encoder EMA at the start; rises linearly to 1
    distance: str = "smooth_l1"  # the authors' code; "mse" is the paper's L2
    optimizer: str = "adamw"
    lr: float = 1e-3
    weight_decay: float = 0.04  # the paper: 0.04 rising to 0.4
    warmup_epochs: float = 1.0  # the paper: 40 of 300


def linear_momentum(base: float, progress: float) -> float:
    """The reference code's EMA schedule: base at the start, rising linearly to 1 at the end."""
    return base + (1 - base) * progress


def gather_tokens(tokens: Tensor, ids: Tensor) -> Tensor:
    """tokens (N, L, D), ids (N, ...) patch indices -> (N, ..., D)."""
    n, d = len(tokens), tokens.shape[-1]
    picked = tokens.gather(1, ids.reshape(n, -1, 1).expand(-1, -1, d))
    return picked.view(*ids.shape, d)


class Predictor(nn.Module):
    """A narrow transformer: context tokens + positional mask tokens of one target block -> that block's
    predicted representations. Every target block is predicted in its own sequence, as in the reference."""

    def __init__(self, encoder_dim: int, dim: int, depth: int, heads: int, grid: int):
        super().__init__()
        self.embed = nn.Linear(encoder_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.register_buffer("pos", sincos_positions(grid, dim), persistent=False)
        self.blocks = nn.Sequential(*[TransformerBlock(dim, heads) for _ in range(depth)], nn.LayerNorm(dim))
        self.project = nn.Linear(dim, encoder_dim)
        init_transformer(self)
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(self, context: Tensor, masks: MultiBlockMasks) -> Tensor:
        """context (N, Kc, encoder_dim) at patches masks.context -> predictions (N, M, Kt, encoder_dim)."""
        x = self.embed(context) + self.pos[masks.context]  # (N, Kc, dim)
        n, m, kt = masks.targets.shape
        queries = self.mask_token + self.pos[masks.targets]  # (N, M, Kt, dim): where to predict
        x = torch.cat([x[:, None].expand(-1, m, -1, -1), queries], dim=2)  # (N, M, Kc + Kt, dim)
        x = self.blocks(x.flatten(0, 1))[:, -kt:]  # one sequence per target block; keep the mask tokens' outputs
        return self.project(x).view(n, m, kt, -1)


@METHODS.register("ijepa")
class IJEPA(Method):
    name = "ijepa"
    Config = IJEPAConfig
    # Not timed here: a step runs the context encoder on ~20 of 49 patches, the target encoder (no gradient) on
    # all 49 and the predictor on 4 sequences per image; about MAE's budget.
    default_epochs = 6

    def __init__(self, config: IJEPAConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = self.configured_encoder()
        if not isinstance(self.encoder, ViT):
            raise SelfSupError(f"I-JEPA needs a ViT encoder (e.g. 'vit_tiny'), got {config.encoder!r}")
        self.grid = spec.height // self.encoder.patch_size
        self.predictor = Predictor(self.encoder.dim, config.predictor_dim, config.predictor_depth,
                                   config.predictor_heads, self.grid)
        self.target_encoder = frozen_copy(self.encoder)
        self.momentum = config.base_momentum
        self.view_config = ViewConfig(crop_scale=config.crop_scale, flip_p=0.0, jitter_p=0.0, grayscale_p=0.0)

    def sample_masks(self, n: int, device: torch.device) -> MultiBlockMasks:
        c = self.config
        return multiblock_masks(n, self.grid, c.targets, c.target_scale, c.target_aspect, c.context_scale,
                                c.min_context, device)

    def encode_context(self, images: Tensor, context_ids: Tensor) -> Tensor:
        """(N, Kc, dim) context-encoder outputs of the context patches (positions added before selecting)."""
        embed = self.encoder.blocks["patch_embed"]
        visible = gather_tokens(embed.patch_tokens(images), context_ids)
        return self.encoder.encode_tokens(embed.with_cls(visible))[:, 1:]

    @torch.no_grad()
    def target_representations(self, images: Tensor, target_ids: Tensor) -> Tensor:
        """(N, M, Kt, dim) target-encoder outputs on the whole image, at the target blocks; no gradient."""
        tokens = self.target_encoder.encode_tokens(self.target_encoder.blocks["patch_embed"](images))[:, 1:]
        return gather_tokens(tokens, target_ids)

    def predict(self, images: Tensor, masks: MultiBlockMasks) -> tuple[Tensor, Tensor]:
        """Predicted and target representations of the target blocks, (N, M, Kt, dim) each."""
        prediction = self.predictor(self.encode_context(images, masks.context), masks)
        return prediction, self.target_representations(images, masks.targets)

    def loss(self, batch: Tensor) -> tuple[Tensor, dict[str, Tensor | float]]:
        images = augment(batch, self.view_config)
        masks = self.sample_masks(len(images), images.device)
        prediction, target = self.predict(images, masks)
        loss = latent_prediction_loss(prediction, target, self.config.distance)
        return loss, {"context_patches": float(masks.context.shape[1]), "momentum": self.momentum,
                      "prediction_std": prediction.detach().std(dim=(0, 1, 2)).mean()}

    def after_step(self, progress: float) -> None:
        self.momentum = linear_momentum(self.config.base_momentum, progress)
        ema_update(self.target_encoder, self.encoder, self.momentum)

    @torch.no_grad()
    def examples(self, batch: Tensor) -> dict[str, Tensor]:
        """8 images: the context the encoder sees (other patches grey) and the target blocks (others grey)."""
        images = to_float(batch[:8])
        masks = self.sample_masks(len(images), images.device)
        context = self.patch_mask(masks.context)
        targets = self.patch_mask(masks.targets.flatten(1))
        grey = torch.full_like(images, 0.5)
        return {"images": images, "context": torch.where(context, images, grey),
                "targets": torch.where(targets, images, grey)}

    def patch_mask(self, ids: Tensor) -> Tensor:
        """Patch indices (N, K) -> bool pixel mask (N, C, H, W), True on the chosen patches."""
        n, patch, channels = len(ids), self.encoder.patch_size, self.spec.channels
        chosen = torch.zeros(n, self.grid * self.grid, device=ids.device).scatter_(1, ids, 1.0)
        return unpatchify(chosen[..., None].expand(-1, -1, patch * patch * channels), patch, channels).bool()
