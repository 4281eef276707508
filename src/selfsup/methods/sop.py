"""SOP: predict whether two consecutive segments are in their original order or swapped (ALBERT).

Lan, Chen, Goodman, Gimpel, Sharma & Soricut, "ALBERT: A Lite BERT for Self-supervised Learning of
Language Representations", ICLR 2020. Kept from the paper: positives are two consecutive segments of
one document in order (label 1), negatives the same two segments swapped (label 0), 50% each, so the
task is about discourse order and not topic (NSP's shortcut); the same [CLS] pooler+classifier as NSP.
Deviations: the two segments cut a fortune's last 61 subwords at a random word start (ALBERT packs
whole sentences up to 512 tokens), drawn among splits p whose mirror n - p is also a word start, so a
swapped pair's lengths look like an ordered one's (see `views.text.mirrored_split_levels`); exactly
half of each batch is in order; ALBERT's parameter sharing and factorised embeddings are not used (same
encoder as BERT). Downstream features are the [CLS] state of the document read as segment A.
"""
from __future__ import annotations

from selfsup.methods.base import METHODS
from selfsup.methods.base.text import SentencePairMethod
from selfsup.views.text import sop_pairs


@METHODS.register("sop")
class SOP(SentencePairMethod):
    name = "sop"
    pair_task = staticmethod(sop_pairs)  # in order: (A, B); swapped: (B, A)
