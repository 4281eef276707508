"""MLM: predict masked subwords from both sides of their context (BERT's masked language model).

Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019. Kept from the paper: 15% of the (non-special) tokens of each sequence are
chosen (exactly round(0.15 n), at least 1, as in BERT's create_pretraining_data.py); of the chosen, 80%
become [MASK], 10% a random token, 10% stay unchanged; the loss is cross-entropy on the chosen positions
only, through a dense+GELU+LayerNorm transform and an output layer tied to the token embeddings.
Deviations: random replacement tokens are drawn from ordinary subwords only (never [CLS]/[PAD]...);
a tiny pre-LN Transformer (see nets/text_transformer.py) and AdamW 1e-3 instead of BERT-base and 1e-4.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.nets import build_encoder
from selfsup.text.tokenizer import MASK_ID, NUM_SPECIAL

IGNORE = -100  # label of positions the loss skips (F.cross_entropy's ignore_index)


@dataclass
class MLMConfig(MethodConfig):
    encoder: str = "text_encoder"
    optimizer: str = "adamw"
    lr: float = 1e-3  # BERT: 1e-4 for a 110M-parameter model; a ~0.4M-parameter one takes a larger step
    weight_decay: float = 0.01  # BERT
    warmup_epochs: float = 1.0  # BERT warms up for 10k of 1M steps; one short epoch here
    mask_prob: float = 0.15  # fraction of tokens chosen for prediction
    mask_token_frac: float = 0.8  # of the chosen: replaced by [MASK]
    random_token_frac: float = 0.1  # of the chosen: replaced by a random subword (the rest stay unchanged)


def rand(shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, device=device, generator=generator)


def choose_positions(maskable: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """Bool (N, L): exactly max(1, round(prob * n_i)) of the n_i maskable positions of each row, at random."""
    count = maskable.sum(1)
    want = torch.where(count > 0, (count * prob).round().clamp(min=1), torch.zeros_like(count))
    scores = rand(maskable.shape, maskable.device, generator).masked_fill(~maskable, 2.0)  # unmaskable last
    rank = scores.argsort(1).argsort(1)
    return rank < want[:, None]


def mask_tokens(input_ids: Tensor, vocab_size: int, prob: float = 0.15, mask_frac: float = 0.8,
                random_frac: float = 0.1, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT corruption: (corrupted ids, labels) with labels = the original id at chosen positions, else -100."""
    chosen = choose_positions(input_ids >= NUM_SPECIAL, prob, generator)
    u = rand(input_ids.shape, input_ids.device, generator)
    to_mask = chosen & (u < mask_frac)
    to_random = chosen & (u >= mask_frac) & (u < mask_frac + random_frac)
    random_ids = torch.randint(NUM_SPECIAL, vocab_size, input_ids.shape, device=input_ids.device, generator=generator)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, MASK_ID), input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    return corrupted, labels


class MLMHead(nn.Module):
    """BERT's prediction head: dense + GELU + LayerNorm, then logits through the tied token embeddings."""

    def __init__(self, dim: int, token_embedding: nn.Embedding):
        super().__init__()
        self.transform = nn.Sequential(nn.Linear(dim, dim), nn.GELU(), nn.LayerNorm(dim))
        self.token_embedding = token_embedding  # shared, not copied: tied output weights
        self.bias = nn.Parameter(torch.zeros(token_embedding.num_embeddings))

    def forward(self, h: Tensor) -> Tensor:
        return F.linear(self.transform(h), self.token_embedding.weight, self.bias)


def masked_lm_loss(head: MLMHead, hidden: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    """Cross-entropy over chosen positions only; logits are computed only there (BERT gathers them too).

    Returns (loss, accuracy of the predictions at the chosen positions).
    """
    chosen = labels != IGNORE
    logits = head(hidden[chosen])
    targets = labels[chosen]
    return F.cross_entropy(logits, targets), (logits.argmax(1) == targets).float().mean()


def build_text_encoder(config: MethodConfig, spec: DataSpec) -> nn.Module:
    return build_encoder(config.encoder, vocab_size=spec.vocab_size, seq_len=spec.seq_len, **config.encoder_kwargs)


def single_text(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The encoder's downstream input: the whole document, [CLS] ... [SEP] (no segment pair)."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


@METHODS.register("mlm")
class MLM(Method):
    name = "mlm"
    modality = "text"
    Config = MLMConfig
    default_data = "fortunes"
    default_epochs = 20  # ~2k steps of 64 x 64 tokens (BERT: 1M steps of 256 x 512)
    default_batch_size = 64

    def __init__(self, config: MLMConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = build_text_encoder(config, spec)
        self.mlm_head = MLMHead(self.encoder.dim, self.encoder.blocks["embed"].token)

    def encoder_input(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return single_text(batch)

    def corrupt(self, input_ids: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
        c = self.config
        return mask_tokens(input_ids, self.spec.vocab_size, c.mask_prob, c.mask_token_frac, c.random_token_frac,
                           generator)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        corrupted, labels = self.corrupt(batch["input_ids"])
        hidden = self.encoder.hidden_states({"input_ids": corrupted, "attention_mask": batch["attention_mask"]})
        loss, accuracy = masked_lm_loss(self.mlm_head, hidden, labels)
        return loss, {"mlm_loss": loss.detach(), "pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """For the first 8 documents: how many tokens were chosen and how many the model got right."""
        input_ids = batch["input_ids"][:8]
        corrupted, labels = self.corrupt(input_ids)
        hidden = self.encoder.hidden_states({"input_ids": corrupted, "attention_mask": input_ids != 0})
        correct = (self.mlm_head(hidden).argmax(-1) == labels) & (labels != IGNORE)
        return {"chosen_tokens": (labels != IGNORE).sum(1), "correct_predictions": correct.sum(1)}
