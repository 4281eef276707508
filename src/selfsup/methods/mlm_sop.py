"""MLM+SOP: ALBERT's pre-training objective, masked subwords and sentence-order prediction together.

Lan, Chen, Goodman, Gimpel, Sharma & Soricut, "ALBERT: A Lite BERT for Self-supervised Learning of
Language Representations", ICLR 2020. As MLM+NSP (mlm_nsp.py: masking on the pair input, one forward,
summed losses), with the pair task replaced by sentence order (sop.py). ALBERT's n-gram masking is not
used: single-token masking as in BERT.
"""
from __future__ import annotations

from selfsup.methods.base import METHODS
from selfsup.methods.base.text import MaskedSentencePairMethod
from selfsup.views.text import sop_pairs


@METHODS.register("mlm-sop")
class MLMSOP(MaskedSentencePairMethod):
    name = "mlm-sop"
    pair_task = staticmethod(sop_pairs)
