"""NSP: predict whether segment B really follows segment A in the document (BERT's next sentence task).

Devlin, Chang, Lee & Toutanova, "BERT: Pre-training of Deep Bidirectional Transformers for Language
Understanding", NAACL 2019. Kept from the paper: inputs "[CLS] A [SEP] B [SEP]" with segment (token
type) embeddings 0 for A and 1 for B; 50% of pairs take the true next segment (IsNext, label 1), 50% a
segment of another document (NotNext, label 0); a binary classifier on the [CLS] state through a
dense+tanh pooler; the NotNext B is as long as the true B would have been (BERT's target_b_length =
target length - len(A)), so segment lengths carry no label. Deviations: A and B cut a fortune's last
61 subwords at a random word start (BERT packs whole sentences up to 512 tokens; fortunes are a few
sentences long), chosen among the splits for which another document can give a B of that length that
ends the document and starts on a word, as the true B does; the NotNext B comes from another row of
the batch, not from the whole corpus; exactly half of each batch is IsNext. Downstream features are
the [CLS] state of the document read as segment A.
"""
from __future__ import annotations

from selfsup.methods.base import METHODS
from selfsup.methods.base.text import SentencePairMethod
from selfsup.views.text import nsp_pairs


@METHODS.register("nsp")
class NSP(SentencePairMethod):
    name = "nsp"
    pair_task = staticmethod(nsp_pairs)  # IsNext: the true continuation; NotNext: another row's document end
