"""The text family's shared part: `TextMethod` (the configured text Transformer, which sees whole
documents downstream), BERT's sentence-pair classification (`SentencePairMethod`: NSP, SOP) and the pair
task with the masked LM on the same input (`MaskedSentencePairMethod`).

Downstream features pool what the pretext task trained: the mean of the token states for the language
models (MLM's loss never reaches the [CLS] state; a decoder's [CLS] sees only itself) and the [CLS] state
for the pair tasks, whose classifier reads it. A pair-trained encoder reads a single document as segment
A (token type 0), as BERT fine-tunes single-sentence tasks; the language models never saw token types.
`encoder_kwargs={"pool": ...}` overrides the pooling."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar

import torch
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.losses.classification import cross_entropy_and_accuracy, masked_lm_loss
from selfsup.methods.base import Method, MethodConfig
from selfsup.nets.heads import MLMHead, PairClassifier
from selfsup.nets.text_transformer import build_text_encoder
from selfsup.views.text import mask_tokens, single_text, single_segment


@dataclass
class TextConfig(MethodConfig):
    encoder: str = "text_encoder"  # bidirectional (BERT); the causal LM uses "text_decoder"
    optimizer: str = "adamw"
    lr: float = 1e-3  # BERT 1e-4 (110M parameters), GPT 2.5e-4 (117M); a ~0.4M-parameter model takes a larger step
    weight_decay: float = 0.01  # BERT and GPT
    warmup_epochs: float = 1.0  # BERT warms up for 10k of 1M steps, GPT for 2k; one short epoch here


@dataclass
class MaskedLMConfig(TextConfig):
    mask_prob: float = 0.15  # fraction of tokens chosen for prediction (BERT)
    mask_token_frac: float = 0.8  # of the chosen: replaced by [MASK]
    random_token_frac: float = 0.1  # of the chosen: replaced by a random subword (the rest stay unchanged)


class TextMethod(Method):
    """A method on tokenized text: the configured text Transformer, which sees whole documents downstream."""

    modality = "text"
    Config = TextConfig
    default_data = "fortunes"
    default_epochs = 20  # ~2k steps of 64 documents of 64 tokens (BERT: 1M steps of 256 x 512)
    default_batch_size = 64
    feature_pool: ClassVar[str] = "mean"  # the states the loss trains: every token's, not [CLS]

    def __init__(self, config: TextConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = build_text_encoder(config.encoder, spec.vocab_size, spec.seq_len,
                                          **{"pool": self.feature_pool, **config.encoder_kwargs})

    def encoder_input(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return single_text(batch)


class SentencePairMethod(TextMethod):
    """Classify "[CLS] A [SEP] B [SEP]" pairs made from each document's two segments by `pair_task`
    (`views.text.nsp_pairs` or `sop_pairs`), with BERT's pooler and a 2-way classifier on [CLS]."""

    pair_task: ClassVar[Callable[..., tuple[dict[str, Tensor], Tensor]]]  # (tokens, word starts, generator)
    feature_pool: ClassVar[str] = "cls"  # the state the pair classifier reads

    def __init__(self, config: TextConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.pair_head = PairClassifier(self.encoder.dim)

    def encoder_input(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return single_segment(batch)

    def make_pairs(self, batch: dict[str, Tensor],
                   generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        return self.pair_task(batch["pair_tokens"], batch["pair_word_starts"], generator)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        pairs, labels = self.make_pairs(batch)
        loss, accuracy = cross_entropy_and_accuracy(self.pair_head(self.encoder.hidden_states(pairs)), labels)
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """First 8 documents: the true pair label and the predicted one."""
        small = {k: v[:8] for k, v in batch.items()}
        pairs, labels = self.make_pairs(small)
        return {"pair_label": labels, "predicted": self.pair_head(self.encoder.hidden_states(pairs)).argmax(1)}


class MaskedSentencePairMethod(SentencePairMethod):
    """The pair task plus BERT's masked LM on the pair input itself (never on [CLS]/[SEP]/[PAD]): one
    forward pass feeds both heads, and the loss is the plain sum of the two cross-entropies."""

    Config = MaskedLMConfig
    # The mean: the masked LM trains every token state (~15% of them per step, a token-level signal), the
    # pair task only [CLS] through a binary pooler; mean-pooled BERT states also probe better frozen than
    # [CLS] (Reimers & Gurevych, 2019, Sentence-BERT, Table 1).
    feature_pool: ClassVar[str] = "mean"

    def __init__(self, config: MaskedLMConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.mlm_head = MLMHead(self.encoder.dim, self.encoder.token_embedding)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        pairs, pair_labels = self.make_pairs(batch)
        c = self.config
        corrupted, token_labels = mask_tokens(pairs["input_ids"], self.spec.vocab_size, c.mask_prob,
                                              c.mask_token_frac, c.random_token_frac)
        hidden = self.encoder.hidden_states({**pairs, "input_ids": corrupted})
        mlm, mlm_acc = masked_lm_loss(self.mlm_head, hidden, token_labels)
        pair, pair_acc = cross_entropy_and_accuracy(self.pair_head(hidden), pair_labels)
        return mlm + pair, {"mlm_loss": mlm.detach(), "pair_loss": pair.detach(), "mlm_acc": mlm_acc,
                            "pretext_acc": pair_acc}
