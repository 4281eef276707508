"""MLM: predict masked subwords from both sides of their context (BERT's masked language model).

Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019. Kept from the paper: 15% of the (non-special) tokens of each sequence are
chosen (exactly round(0.15 n), at least 1, as in BERT's create_pretraining_data.py); of the chosen, 80%
become [MASK], 10% a random token, 10% stay unchanged; the loss is cross-entropy on the chosen positions
only, through a dense+GELU+LayerNorm transform and an output layer tied to the token embeddings.
Deviations: random replacement tokens are drawn from ordinary subwords only (never [CLS]/[PAD]...);
a tiny BERT (Hugging Face `BertModel`, 2 layers, width 64; see nets/text_transformer.py) and AdamW 1e-3
instead of BERT-base and 1e-4.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.losses.classification import masked_lm_loss
from selfsup.methods.base import METHODS
from selfsup.methods.base.text import MaskedLMConfig, TextMethod
from selfsup.nets.heads import MLMHead
from selfsup.views.text import IGNORE, mask_tokens, token_input


@METHODS.register("mlm")
class MLM(TextMethod):
    name = "mlm"
    Config = MaskedLMConfig

    def __init__(self, config: MaskedLMConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.mlm_head = MLMHead(self.encoder.dim, self.encoder.token_embedding)

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
    def heldout_stats(self, batch: dict[str, Tensor], generator: torch.Generator) -> dict[str, Tensor]:
        """Sums over the chosen tokens of held-out documents (masked with `generator`, so every check masks
        the same ones): cross-entropy, correct predictions, count. Masked-token accuracy = correct / count;
        perplexity = exp(nll / count), BERT's masked-LM perplexity (not a left-to-right one)."""
        corrupted, labels = self.corrupt(batch["input_ids"], generator)
        hidden = self.encoder.hidden_states({"input_ids": corrupted, "attention_mask": batch["attention_mask"]})
        chosen = labels != IGNORE
        logits = self.mlm_head(hidden[chosen])
        return {"nll": F.cross_entropy(logits, labels[chosen], reduction="sum"),
                "correct": (logits.argmax(-1) == labels[chosen]).sum(), "count": chosen.sum()}

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """For the first 8 documents: how many tokens were chosen and how many the model got right."""
        input_ids = batch["input_ids"][:8]
        corrupted, labels = self.corrupt(input_ids)
        hidden = self.encoder.hidden_states(token_input(corrupted))  # corruption never creates or hides [PAD]
        correct = (self.mlm_head(hidden).argmax(-1) == labels) & (labels != IGNORE)
        return {"chosen_tokens": (labels != IGNORE).sum(1), "correct_predictions": correct.sum(1)}
