"""MLM+NSP: BERT's full pre-training objective, masked subwords and next-segment prediction together.

Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019. Kept from the paper: the masked LM corruption (15%; 80/10/10) is applied to
the "[CLS] A [SEP] B [SEP]" pair input itself (never to [CLS]/[SEP]/[PAD]), one forward pass feeds both
heads, and the loss is the plain sum of the MLM and NSP cross-entropies. Pair building and masking come
from nsp.py and mlm.py, with the deviations listed there.
"""
from __future__ import annotations

from torch import Tensor

from selfsup.data.base import DataSpec
from selfsup.methods.base import METHODS
from selfsup.methods.mlm import MLMConfig, MLMHead, mask_tokens, masked_lm_loss
from selfsup.methods.nsp import NSP, pair_loss


@METHODS.register("mlm-nsp")
class MLMNSP(NSP):
    name = "mlm-nsp"
    Config = MLMConfig

    def __init__(self, config: MLMConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.mlm_head = MLMHead(self.encoder.dim, self.encoder.blocks["embed"].token)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        pairs, pair_labels = self.make_pairs(batch)
        c = self.config
        corrupted, token_labels = mask_tokens(pairs["input_ids"], self.spec.vocab_size, c.mask_prob,
                                              c.mask_token_frac, c.random_token_frac)
        hidden = self.encoder.hidden_states({**pairs, "input_ids": corrupted})
        mlm, mlm_acc = masked_lm_loss(self.mlm_head, hidden, token_labels)
        pair, pair_acc = pair_loss(self.pair_head, hidden, pair_labels)
        return mlm + pair, {"mlm_loss": mlm.detach(), "pair_loss": pair.detach(), "mlm_acc": mlm_acc,
                            "pretext_acc": pair_acc}
