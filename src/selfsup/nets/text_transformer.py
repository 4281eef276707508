"""Small Transformers for text: a bidirectional encoder (BERT-style) and a causal decoder (GPT-style).

Both are `BlockEncoder`s with blocks "embed", "layer1".."layerK", so transfer code can freeze up to a
block or read features after one. Input: the text batch dict (`input_ids` (N, L) int64,
`attention_mask` (N, L) bool, optional `token_type_ids`); `forward` returns pooled (N, D) features
("cls": the first position's vector, "mean": the mean over non-pad tokens, "last": the last non-pad
token); `hidden_states` returns the per-token (N, L, D) states that MLM/CLM heads read.
Pre-LayerNorm blocks (as GPT-2) train more stably than BERT's post-LN at this size. Default size,
d=64, 2 layers, 4 heads, FFN 256 (BERT-base: 768, 12, 12, 3072), fits 2 CPU cores; dropout is off by
default (BERT/GPT: 0.1) because short CPU runs underfit rather than overfit, and it costs ~20% of a step.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.errors import SelfSupError
from selfsup.nets.base import BlockEncoder
from selfsup.nets.registry import ENCODERS

POOLS = ("cls", "mean", "last")


class Embeddings(nn.Module):
    """Token + learned position + segment (token type) embeddings, then dropout."""

    def __init__(self, vocab_size: int, dim: int, max_len: int, dropout: float):
        super().__init__()
        self.token = nn.Embedding(vocab_size, dim)
        self.position = nn.Embedding(max_len, dim)
        self.token_type = nn.Embedding(2, dim)
        self.dropout = nn.Dropout(dropout)
        for emb in (self.token, self.position, self.token_type):
            nn.init.normal_(emb.weight, std=0.02)  # BERT/GPT initialisation

    def forward(self, input_ids: Tensor, token_type_ids: Tensor | None = None) -> Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        h = self.token(input_ids) + self.position(positions)
        if token_type_ids is not None:
            h = h + self.token_type(token_type_ids)
        return self.dropout(h)


class TransformerBlock(nn.Module):
    """Pre-LN self-attention + GELU feed-forward, each with a residual connection."""

    def __init__(self, dim: int, heads: int, ffn_dim: int, dropout: float):
        super().__init__()
        if dim % heads:
            raise SelfSupError(f"model width {dim} is not divisible by {heads} heads")
        self.heads, self.dropout = heads, dropout
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(), nn.Linear(ffn_dim, dim), nn.Dropout(dropout))

    def forward(self, h: Tensor, allowed: Tensor) -> Tensor:
        """`allowed` (N, 1, L, L) bool: query i may attend to key j."""
        n, length, dim = h.shape
        q, k, v = self.qkv(self.norm1(h)).view(n, length, 3, self.heads, dim // self.heads).permute(2, 0, 3, 1, 4)
        attended = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed,
                                                  dropout_p=self.dropout if self.training else 0.0)
        h = h + F.dropout(self.out(attended.transpose(1, 2).reshape(n, length, dim)), self.dropout, self.training)
        return h + self.ffn(self.norm2(h))


class TextTransformer(BlockEncoder):
    """Embeddings and Transformer blocks; `causal=True` makes it a decoder (no looking ahead)."""

    def __init__(self, vocab_size: int, seq_len: int, dim: int = 64, layers: int = 2, heads: int = 4,
                 ffn_dim: int = 256, dropout: float = 0.0, causal: bool = False, pool: str = "cls"):
        super().__init__()
        if pool not in POOLS:
            raise SelfSupError(f"unknown text pooling {pool!r}; use one of {', '.join(POOLS)}")
        self.causal, self.pool_mode, self.dim = causal, pool, dim
        self.input_shape = (seq_len,)
        self.blocks = nn.ModuleDict({"embed": Embeddings(vocab_size, dim, seq_len, dropout)})
        for i in range(layers):
            self.blocks[f"layer{i + 1}"] = TransformerBlock(dim, heads, ffn_dim, dropout)
        self.norm = nn.LayerNorm(dim)  # final LayerNorm of pre-LN stacks

    def attention_allowed(self, attention_mask: Tensor) -> Tensor:
        """(N, 1, L, L) bool: keys must be real tokens, and for a decoder not after the query."""
        allowed = attention_mask[:, None, None, :].bool()
        if self.causal:
            length = attention_mask.shape[1]
            allowed = allowed & torch.ones(length, length, dtype=torch.bool, device=attention_mask.device).tril()
        # A padded query row would see no key in a left-padded decoder; let every query see itself.
        # (A float eye cast to bool: onnxruntime has no boolean EyeLike, and exports should run there.)
        return allowed | torch.eye(attention_mask.shape[1], device=attention_mask.device).bool()

    def hidden_states(self, x: dict[str, Tensor], upto: str | None = None) -> Tensor:
        """Per-token states (N, L, D) after block `upto` (default: all blocks, then the final norm)."""
        self.check_block(upto)
        input_ids = x["input_ids"]
        mask = x.get("attention_mask")
        mask = input_ids != 0 if mask is None else mask.bool()
        allowed = self.attention_allowed(mask)
        h = self.blocks["embed"](input_ids, x.get("token_type_ids"))
        for name, block in self.blocks.items():
            if name != "embed":
                h = block(h, allowed)
            if name == upto:
                return h
        return self.norm(h)

    def pool_states(self, h: Tensor, attention_mask: Tensor, pool: str | None = None) -> Tensor:
        pool = pool or self.pool_mode
        if pool == "cls":
            return h[:, 0]
        mask = attention_mask.bool()
        if pool == "mean":
            weights = mask.unsqueeze(-1).to(h.dtype)
            return (h * weights).sum(1) / weights.sum(1).clamp(min=1.0)
        last = (mask.long().cumsum(1) * mask).argmax(1)  # index of the last real token
        return h[torch.arange(h.shape[0], device=h.device), last]  # shape[0], not len(): exports keep N free

    def forward(self, x: dict[str, Tensor], upto: str | None = None, pool: str | None = None) -> Tensor:
        h = self.hidden_states(x, upto)
        mask = x.get("attention_mask")
        return self.pool_states(h, x["input_ids"] != 0 if mask is None else mask, pool)

    def feature_dim(self, upto: str | None = None) -> int:
        self.check_block(upto)
        return self.dim


@ENCODERS.register("text_encoder")
def text_encoder(vocab_size: int, seq_len: int, pool: str = "cls", **kwargs) -> TextTransformer:
    """Bidirectional encoder; features are the [CLS] vector by default ("mean" pools non-pad tokens)."""
    return TextTransformer(vocab_size, seq_len, causal=False, pool=pool, **kwargs)


@ENCODERS.register("text_decoder")
def text_decoder(vocab_size: int, seq_len: int, pool: str = "mean", **kwargs) -> TextTransformer:
    """Causal decoder; [CLS] sees only itself under the causal mask, so features default to the mean."""
    return TextTransformer(vocab_size, seq_len, causal=True, pool=pool, **kwargs)


def build_text_encoder(name: str, vocab_size: int, seq_len: int, **kwargs) -> TextTransformer:
    """The registered text encoder `name` ("text_encoder" or "text_decoder") for this vocabulary and length."""
    return ENCODERS.get(name)(vocab_size=vocab_size, seq_len=seq_len, **kwargs)
