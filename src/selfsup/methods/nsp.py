"""NSP: predict whether segment B really follows segment A in the document (BERT's next sentence task).

Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019. Kept from the paper: inputs "[CLS] A [SEP] B [SEP]" with segment (token
type) embeddings 0 for A and 1 for B; 50% of pairs take the true next segment (IsNext, label 1), 50% a
segment of another document (NotNext, label 0); a binary classifier on the [CLS] state through a
dense+tanh pooler. Deviations: A and B are the two halves of one fortune's first 2S subwords (BERT packs
sentences up to 512 tokens); the random segment comes from another row of the batch (one random shift
for the whole batch), not from the whole corpus; exactly half of each batch is IsNext.
"""
from __future__ import annotations

from selfsup.methods.base import METHODS
from selfsup.methods.base.text import SentencePairMethod
from selfsup.views.text import nsp_pairs


@METHODS.register("nsp")
class NSP(SentencePairMethod):
    name = "nsp"
    pair_task = staticmethod(nsp_pairs)  # IsNext: the true second segment; NotNext: another row's
