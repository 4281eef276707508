"""MLM+SOP: ALBERT's pre-training objective, masked subwords and sentence-order prediction together.

Lan, Chen, Goodman, Gimpel, Sharma & Soricut, "ALBERT: A Lite BERT for Self-supervised Learning of
Language Representations", ICLR 2020. As MLM+NSP (mlm_nsp.py: masking on the pair input, one forward,
summed losses), with the pair task replaced by sentence order (sop.py). ALBERT's n-gram masking is not
used: single-token masking as in BERT.
"""
from __future__ import annotations

import torch
from torch import Tensor

from selfsup.methods.base import METHODS
from selfsup.methods.mlm_nsp import MLMNSP
from selfsup.methods.sop import sop_pairs


@METHODS.register("mlm-sop")
class MLMSOP(MLMNSP):
    name = "mlm-sop"

    def make_pairs(self, batch: dict[str, Tensor],
                   generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        return sop_pairs(batch["segments"], batch["segment_lengths"], generator)
