"""Small Transformers for text, built on Hugging Face `transformers`: a bidirectional encoder (a small
`BertModel`) and a causal decoder (a small `GPT2Model`).

Both are `BlockEncoder`s with blocks "embed", "layer1".."layerK" (views of the Hugging Face modules, not
copies), so transfer code can freeze up to a block or read features after one. Input: the text batch dict
(`input_ids` (N, L) int64, `attention_mask` (N, L) bool, optional `token_type_ids`); `forward` returns
pooled (N, D) features ("cls": the first position's vector, "mean": the mean over non-pad tokens, "last":
the last non-pad token); `hidden_states` returns the per-token (N, L, D) states that MLM/CLM heads read.
`self.model` is the plain Hugging Face model: `self.model.save_pretrained(dir)` writes a folder that
`transformers.AutoModel.from_pretrained(dir)` loads in one call (`selfsup export RUN --format hf`).

BERT is post-LN (as the paper), GPT-2 pre-LN with a final LayerNorm. BERT's own pooler is left out
(`add_pooling_layer=False`): the pair tasks have their own pooler head (`nets.heads.PairClassifier`) and
features are pooled here. GPT-2 has no segment embeddings: token types are ignored by the decoder.
Default size, d=64, 2 layers, 4 heads, FFN 256 (BERT-base: 768, 12, 12, 3072), fits 2 CPU cores; dropout
is off by default (BERT/GPT: 0.1) because short CPU runs underfit rather than overfit.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from selfsup.errors import SelfSupError
from selfsup.nets.base import BlockEncoder
from selfsup.nets.registry import ENCODERS
from selfsup.text.tokenizer import CLS_ID, PAD_ID, SEP_ID

POOLS = ("cls", "mean", "last")


def _check_sizes(dim: int, heads: int, pool: str) -> None:
    if pool not in POOLS:
        raise SelfSupError(f"unknown text pooling {pool!r}; use one of {', '.join(POOLS)}")
    if dim % heads:
        raise SelfSupError(f"model width {dim} is not divisible by {heads} heads; choose dim and heads so it is")


def bert_config(vocab_size: int, seq_len: int, dim: int = 64, layers: int = 2, heads: int = 4,
                ffn_dim: int = 256, dropout: float = 0.0):
    from transformers import BertConfig

    return BertConfig(vocab_size=vocab_size, hidden_size=dim, num_hidden_layers=layers, num_attention_heads=heads,
                      intermediate_size=ffn_dim, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout,
                      max_position_embeddings=seq_len, type_vocab_size=2, pad_token_id=PAD_ID)


def gpt2_config(vocab_size: int, seq_len: int, dim: int = 64, layers: int = 2, heads: int = 4,
                ffn_dim: int = 256, dropout: float = 0.0):
    from transformers import GPT2Config

    return GPT2Config(vocab_size=vocab_size, n_embd=dim, n_layer=layers, n_head=heads, n_inner=ffn_dim,
                      n_positions=seq_len, resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
                      bos_token_id=CLS_ID, eos_token_id=SEP_ID, pad_token_id=PAD_ID)


class TextTransformer(BlockEncoder):
    """A Hugging Face BERT (`causal=False`) or GPT-2 (`causal=True`) body with selfsup's block/pool interface."""

    def __init__(self, vocab_size: int, seq_len: int, dim: int = 64, layers: int = 2, heads: int = 4,
                 ffn_dim: int = 256, dropout: float = 0.0, causal: bool = False, pool: str = "cls"):
        super().__init__()
        _check_sizes(dim, heads, pool)
        from transformers import BertModel, GPT2Model

        self.causal, self.pool_mode, self.dim = causal, pool, dim
        self.input_shape = (seq_len,)
        sizes = dict(dim=dim, layers=layers, heads=heads, ffn_dim=ffn_dim, dropout=dropout)
        if causal:
            self.model = GPT2Model(gpt2_config(vocab_size, seq_len, **sizes))
            embed, stack = self.model.wte, self.model.h
        else:
            self.model = BertModel(bert_config(vocab_size, seq_len, **sizes), add_pooling_layer=False)
            embed, stack = self.model.embeddings, self.model.encoder.layer
        # Views for freezing and `upto`: a plain dict, so the parameters are registered once (under `model`).
        blocks = {"embed": embed} | {f"layer{i + 1}": layer for i, layer in enumerate(stack)}
        if causal:  # GPT-2's embeddings are two modules, both frozen with "embed"
            blocks["embed"] = nn.ModuleList([self.model.wte, self.model.wpe])
        object.__setattr__(self, "blocks", blocks)

    @property
    def token_embedding(self) -> nn.Embedding:
        """The token embedding table that the LM heads tie their output layer to."""
        return self.model.get_input_embeddings()

    @property
    def token_type_embedding(self) -> nn.Embedding | None:
        """BERT's segment embedding (None for the decoder, which has none)."""
        return None if self.causal else self.model.embeddings.token_type_embeddings

    def model_inputs(self, x: dict[str, Tensor]) -> dict[str, Tensor]:
        input_ids = x["input_ids"]
        mask = x.get("attention_mask")
        mask = input_ids != PAD_ID if mask is None else mask
        inputs = {"input_ids": input_ids, "attention_mask": mask.long()}
        if not self.causal and x.get("token_type_ids") is not None:
            inputs["token_type_ids"] = x["token_type_ids"]
        return inputs

    def hidden_states(self, x: dict[str, Tensor], upto: str | None = None) -> Tensor:
        """Per-token states (N, L, D) after block `upto` (default: the model's last hidden state)."""
        self.check_block(upto)
        if upto is None:
            return self.model(**self.model_inputs(x)).last_hidden_state
        out = self.model(**self.model_inputs(x), output_hidden_states=True)
        return out.hidden_states[list(self.blocks).index(upto)]  # [0] is the embedding output

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
        return self.pool_states(h, x["input_ids"] != PAD_ID if mask is None else mask, pool)

    def feature_dim(self, upto: str | None = None) -> int:
        self.check_block(upto)
        return self.dim


@ENCODERS.register("text_encoder")
def text_encoder(vocab_size: int, seq_len: int, pool: str = "cls", **kwargs) -> TextTransformer:
    """Bidirectional encoder (small BERT); features are the [CLS] vector by default ("mean" pools non-pad tokens)."""
    return TextTransformer(vocab_size, seq_len, causal=False, pool=pool, **kwargs)


@ENCODERS.register("text_decoder")
def text_decoder(vocab_size: int, seq_len: int, pool: str = "mean", **kwargs) -> TextTransformer:
    """Causal decoder (small GPT-2); [CLS] sees only itself under the causal mask, so features default to the mean."""
    return TextTransformer(vocab_size, seq_len, causal=True, pool=pool, **kwargs)


def build_text_encoder(name: str, vocab_size: int, seq_len: int, **kwargs) -> TextTransformer:
    """The registered text encoder `name` ("text_encoder" or "text_decoder") for this vocabulary and length."""
    return ENCODERS.get(name)(vocab_size=vocab_size, seq_len=seq_len, **kwargs)
