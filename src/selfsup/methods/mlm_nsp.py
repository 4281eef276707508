"""MLM+NSP: BERT's full pre-training objective, masked subwords and next-segment prediction together.

Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019. Kept from the paper: the masked LM corruption (15%; 80/10/10) is applied to
the "[CLS] A [SEP] B [SEP]" pair input itself (never to [CLS]/[SEP]/[PAD]), one forward pass feeds both
heads, and the loss is the plain sum of the MLM and NSP cross-entropies. Pair building and masking are
those of nsp.py and mlm.py (`views.text.nsp_pairs`, `mask_tokens`), with the deviations listed there;
the two heads and the summed loss are `methods.base.MaskedSentencePairMethod`, shared with MLM+SOP.
"""
from __future__ import annotations

from selfsup.methods.base import METHODS
from selfsup.methods.base.text import MaskedSentencePairMethod
from selfsup.views.text import nsp_pairs


@METHODS.register("mlm-nsp")
class MLMNSP(MaskedSentencePairMethod):
    name = "mlm-nsp"
    pair_task = staticmethod(nsp_pairs)
