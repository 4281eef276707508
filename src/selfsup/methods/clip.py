"""CLIP: predict which caption in the batch belongs to each image, and which image to each caption.

Radford, Kim, Hallacy, Ramesh, Goh, Agarwal, Sastry, Askell, Mishkin, Clark, Krueger & Sutskever, "Learning
Transferable Visual Models From Natural Language Supervision", ICML 2021. An image encoder and a text
encoder, each followed by a linear projection (no bias) into a shared embedding space; the cosine
similarities of the batch's N images and N captions, multiplied by a learned logit scale (initialised to
1/0.07, clamped at 100), are scored with a symmetric cross-entropy (`selfsup.losses.clip.clip_loss`; across
processes against the captions and images of every rank). The text encoder is a Transformer with masked
(causal) self-attention whose features are read at the end-of-text token ([SEP], the last real token), as in
the paper. `encoder` (the image encoder) is what transfers; `encode_image` / `encode_text` give normalised
embeddings for zero-shot classification and retrieval (`selfsup.evaluate.zero_shot`).

Deviations (32x32 emoji, 2 CPU cores):
- Image encoder: the small ConvNet with BatchNorm (widths 64-32-128) instead of ResNet-50 / ViT.
- Text encoder: 2 layers, width 64, 4 heads (the paper: 12 layers, width 512, 8 heads); captions of 32
  tokens of a vocabulary of the training captions' words plus characters (the paper: 76 BPE tokens, 49,152
  vocabulary).
- Embedding dimension 64 (the paper: 512-1024).
- AdamW lr 5e-4, weight decay 0.2, beta2 0.98 (the paper's values) on batches of 256 (the paper: 32,768); the
  decay applies to every parameter, gains, biases and the logit scale included (open_clip exempts those; the
  trainer keeps one parameter group).
- Augmentation: a random square crop of 64-100% of the area, resized back (the paper: a random square crop
  of the resized image, its only augmentation); no flips, since captions say "left" and "right".
- The paper says only that the scale is "clipped to prevent scaling the logits by more than 100"; here exp(s)
  is clamped at 100 in the loss and the parameter s at log 100 after every step, as open_clip does.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn
import torch.nn.functional as F

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.losses.clip import INIT_LOGIT_SCALE, MAX_LOGIT_SCALE, clip_loss, logit_scale_value
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets.text_transformer import build_text_encoder
from selfsup.views import to_float
from selfsup.views.augment import crop_boxes, resized_crop_and_flip


def _default_encoder_kwargs() -> dict[str, Any]:
    return {"widths": (64, 32, 128), "batch_norm": True}


@dataclass
class CLIPConfig(MethodConfig):
    encoder_kwargs: dict[str, Any] = field(default_factory=_default_encoder_kwargs)
    optimizer: str = "adamw"  # the paper: Adam with decoupled weight decay
    lr: float = 5e-4
    weight_decay: float = 0.2
    betas: tuple[float, float] = (0.9, 0.98)  # the paper's beta2 for stability
    text_encoder: str = "text_decoder"  # causal self-attention, as the paper's text Transformer
    text_kwargs: dict[str, Any] = field(default_factory=dict)  # e.g. {"dim": 64, "layers": 2, "heads": 4}
    text_pool: str = "last"  # features at the end-of-text token, as in the paper
    embed_dim: int = 64  # the paper: 512 (ResNet-50) to 1024
    init_logit_scale: float = INIT_LOGIT_SCALE  # log(1 / 0.07)
    max_logit_scale: float = MAX_LOGIT_SCALE  # 100
    crop_scale: tuple[float, float] = (0.64, 1.0)  # area fraction of the random square crop (ours)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.text_kwargs is None:
            self.text_kwargs = {}
        if self.max_logit_scale <= 0 or math.exp(self.init_logit_scale) > self.max_logit_scale:
            raise SelfSupError(f"init_logit_scale {self.init_logit_scale} must satisfy exp(init) <= max_logit_scale "
                               f"({self.max_logit_scale}); the paper: log(1/0.07) and 100")


@METHODS.register("clip")
class CLIP(Method):
    name = "clip"
    modality = "image-text"
    Config = CLIPConfig
    default_data = "emoji"
    default_epochs = 30
    default_batch_size = 256

    def __init__(self, config: CLIPConfig, spec: DataSpec):
        super().__init__(config, spec)
        if not spec.vocab_size or not spec.seq_len:
            raise SelfSupError("CLIP needs image-caption pairs (a DataSpec with vocab_size and seq_len), e.g. "
                               "the `emoji` data or a folder of images with .txt captions")
        self.encoder = self.configured_encoder()
        self.text_encoder = build_text_encoder(config.text_encoder, spec.vocab_size, spec.seq_len,
                                               pool=config.text_pool, **config.text_kwargs)
        if self.text_encoder.token_type_embedding is not None:  # a BERT text encoder: captions are one segment
            self.text_encoder.token_type_embedding.requires_grad_(False)
        self.image_projection = nn.Linear(self.encoder.feature_dim(), config.embed_dim, bias=False)
        self.text_projection = nn.Linear(self.text_encoder.feature_dim(), config.embed_dim, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config.init_logit_scale)))

    # --- embeddings --------------------------------------------------------------------------------
    def encode_image(self, images: Tensor) -> Tensor:
        """Float images (N, C, H, W) in [0, 1] -> normalised embeddings (N, embed_dim)."""
        return F.normalize(self.image_projection(self.encoder(images)), dim=-1)

    def encode_text(self, tokens: dict[str, Tensor]) -> Tensor:
        """{"input_ids", "attention_mask"} (N, L) -> normalised embeddings (N, embed_dim)."""
        return F.normalize(self.text_projection(self.text_encoder(tokens)), dim=-1)

    def scale(self) -> Tensor:
        return logit_scale_value(self.logit_scale, self.config.max_logit_scale)

    def encoder_input(self, batch: Tensor | dict[str, Tensor]) -> Tensor:
        """The images of a pair batch (or plain images, for transfer) as floats in [0, 1], grayscale repeated to RGB."""
        x = to_float(batch["images"] if isinstance(batch, dict) else batch)
        if x.shape[1] == 1 and self.spec.channels == 3:  # grayscale data for a colour encoder (transfer)
            x = x.expand(-1, 3, -1, -1)
        return x

    def views(self, images: Tensor) -> Tensor:
        """One random square crop per image, resized back to the input size."""
        x = to_float(images)
        boxes = crop_boxes(len(x), self.config.crop_scale, (1.0, 1.0), x)
        return resized_crop_and_flip(x, boxes, torch.zeros(len(x), dtype=torch.bool, device=x.device))

    # --- the contract ------------------------------------------------------------------------------
    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        image = self.encode_image(self.views(batch["images"]))  # (N, E), row i = pair i
        text = self.encode_text(batch)  # (N, E)
        scale = self.scale()
        loss = clip_loss(image, text, scale)
        with torch.no_grad():
            hits = (image @ text.T).argmax(1) == torch.arange(len(image), device=image.device)
        return loss, {"pretext_acc": hits.float().mean(), "logit_scale": scale.detach()}

    @torch.no_grad()
    def after_step(self, progress: float) -> None:
        self.logit_scale.clamp_(0, math.log(self.config.max_logit_scale))  # as open_clip, after each step

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """The images, their crops, and for each the index in the batch of the caption it matches best."""
        images = to_float(batch["images"][:8])
        tokens = {k: batch[k][:8] for k in ("input_ids", "attention_mask")}
        best = (self.encode_image(images) @ self.encode_text(tokens).T).argmax(1)
        return {"images": images, "crops": self.views(batch["images"][:8]), "best caption": best.float()}
