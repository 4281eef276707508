"""CLM: predict each next subword from the ones before it (generative pre-training, GPT).

Radford, Narasimhan, Salimans & Sutskever, "Improving Language Understanding by Generative
Pre-Training", OpenAI 2018. Kept from the paper: a Transformer decoder with a causal mask trained by
next-token cross-entropy, output layer tied to the token embeddings; perplexity (exp of the mean loss
over real tokens) is reported. `selfsup.text.generate.generate` samples text from a trained model.
Deviations: a tiny GPT-2 decoder (Hugging Face `GPT2Model`, pre-LN; GPT: 12 layers, 768 wide, 512 tokens), AdamW 1e-3 instead of 2.5e-4;
downstream features are the mean of the token states (GPT fine-tunes on the last token; `pool="last"`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.methods.base import METHODS
from selfsup.methods.base.text import TextConfig, TextMethod
from selfsup.views.text import IGNORE, next_token_targets, single_text, token_input


@dataclass
class CLMConfig(TextConfig):
    encoder: str = "text_decoder"  # causal: no position sees the ones after it


@METHODS.register("clm")
class CLM(TextMethod):
    name = "clm"
    Config = CLMConfig

    def __init__(self, config: CLMConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.lm_bias = torch.nn.Parameter(torch.zeros(spec.vocab_size))

    def logits(self, x: dict[str, Tensor]) -> Tensor:
        """Next-token logits (N, L, V) at every position; tied to the token embeddings."""
        hidden = self.encoder.hidden_states(x)
        return F.linear(hidden, self.encoder.token_embedding.weight, self.lm_bias)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        hidden = self.encoder.hidden_states(single_text(batch))[:, :-1]
        targets = next_token_targets(batch["input_ids"])
        real = targets != IGNORE
        # Vocabulary logits only where a real next token exists: about half the positions are padding.
        logits = F.linear(hidden[real], self.encoder.token_embedding.weight, self.lm_bias)
        loss = F.cross_entropy(logits, targets[real])
        accuracy = (logits.argmax(-1) == targets[real]).float().mean()
        return loss, {"perplexity": loss.detach().exp(), "pretext_acc": accuracy}

    @torch.no_grad()
    def heldout_stats(self, batch: dict[str, Tensor], generator: torch.Generator | None = None) -> dict[str, Tensor]:
        """Sums over every real next token of held-out documents: cross-entropy, correct predictions, count
        (perplexity = exp(nll / count), token-weighted over the whole held-out set)."""
        hidden = self.encoder.hidden_states(single_text(batch))[:, :-1]
        targets = next_token_targets(batch["input_ids"])
        real = targets != IGNORE
        logits = F.linear(hidden[real], self.encoder.token_embedding.weight, self.lm_bias)
        return {"nll": F.cross_entropy(logits, targets[real], reduction="sum"),
                "correct": (logits.argmax(-1) == targets[real]).sum(), "count": real.sum()}

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per document (first 8): its perplexity under the model."""
        input_ids = batch["input_ids"][:8]
        logits = self.logits(token_input(input_ids))[:, :-1]
        targets = next_token_targets(input_ids)
        nll = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE, reduction="none")
        real = (targets != IGNORE).float()
        return {"perplexity": ((nll * real).sum(1) / real.sum(1).clamp(min=1)).exp()}
