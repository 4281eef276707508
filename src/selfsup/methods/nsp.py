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

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from selfsup.data.base import DataSpec
from selfsup.errors import SelfSupError
from selfsup.methods.base import METHODS, Method, MethodConfig
from selfsup.methods.mlm import build_text_encoder, single_text
from selfsup.text.tokenizer import CLS_ID, PAD_ID, SEP_ID


@dataclass
class PairConfig(MethodConfig):
    encoder: str = "text_encoder"
    optimizer: str = "adamw"
    lr: float = 1e-3  # BERT: 1e-4 for a 110M-parameter model
    weight_decay: float = 0.01  # BERT
    warmup_epochs: float = 1.0


def gather_or_pad(tokens: Tensor, index: Tensor, valid: Tensor) -> Tensor:
    """tokens[i, index[i, j]] where valid[i, j], else [PAD]."""
    picked = tokens.gather(1, index.clamp(0, tokens.shape[1] - 1))
    return torch.where(valid, picked, torch.full_like(picked, PAD_ID))


def build_pairs(first: Tensor, first_len: Tensor, second: Tensor, second_len: Tensor) -> dict[str, Tensor]:
    """"[CLS] A [SEP] B [SEP] [PAD]..." rows of length 2S+3 from padded segments (N, S) and their lengths (N,)."""
    n, seg = first.shape
    pos = torch.arange(2 * seg + 3, device=first.device).expand(n, -1)
    a_len, b_len = first_len[:, None], second_len[:, None]
    in_a = (pos >= 1) & (pos <= a_len)
    b_start = a_len + 2
    in_b = (pos >= b_start) & (pos < b_start + b_len)
    ids = gather_or_pad(first, pos - 1, in_a) + gather_or_pad(second, pos - b_start, in_b)  # PAD is 0
    ids = ids.masked_fill(pos == 0, CLS_ID)
    ids = ids.masked_fill((pos == a_len + 1) | (pos == b_start + b_len), SEP_ID)
    token_type = ((pos >= b_start) & (pos <= b_start + b_len)).long()  # B and its closing [SEP]
    return {"input_ids": ids, "attention_mask": ids != PAD_ID, "token_type_ids": token_type}


def half_positive(n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """Bool (n,): a random half of the rows (ceil(n/2)) are True."""
    order = torch.randperm(n, device=device, generator=generator)
    return order < (n + 1) // 2


def nsp_pairs(segments: Tensor, lengths: Tensor,
              generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """Pairs (A, true B) for label 1, (A, B of row (i + shift) mod N) for label 0; shift in [1, N-1]."""
    n = len(segments)
    if n < 2:
        raise SelfSupError("next sentence prediction needs at least 2 documents per batch")
    is_next = half_positive(n, segments.device, generator)
    shift = torch.randint(1, n, (), device=segments.device, generator=generator)
    other = (torch.arange(n, device=segments.device) + shift) % n
    second = torch.where(is_next[:, None], segments[:, 1], segments[other, 1])
    second_len = torch.where(is_next, lengths[:, 1], lengths[other, 1])
    return build_pairs(segments[:, 0], lengths[:, 0], second, second_len), is_next.long()


class PairClassifier(nn.Module):
    """BERT's pooler (dense + tanh on the [CLS] state) and a 2-way linear classifier."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim), nn.Tanh(), nn.Linear(dim, 2))

    def forward(self, hidden: Tensor) -> Tensor:
        return self.net(hidden[:, 0])


def pair_loss(classifier: PairClassifier, hidden: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
    logits = classifier(hidden)
    return F.cross_entropy(logits, labels), (logits.argmax(1) == labels).float().mean()


@METHODS.register("nsp")
class NSP(Method):
    name = "nsp"
    modality = "text"
    Config = PairConfig
    default_data = "fortunes"
    default_epochs = 20  # ~2k steps of 64 pairs
    default_batch_size = 64

    def __init__(self, config: PairConfig, spec: DataSpec):
        super().__init__(config, spec)
        self.encoder = build_text_encoder(config, spec)
        self.pair_head = PairClassifier(self.encoder.dim)

    def encoder_input(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        return single_text(batch)

    def make_pairs(self, batch: dict[str, Tensor],
                   generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
        return nsp_pairs(batch["segments"], batch["segment_lengths"], generator)

    def loss(self, batch: dict[str, Tensor]) -> tuple[Tensor, dict[str, Tensor]]:
        pairs, labels = self.make_pairs(batch)
        loss, accuracy = pair_loss(self.pair_head, self.encoder.hidden_states(pairs), labels)
        return loss, {"pretext_acc": accuracy}

    @torch.no_grad()
    def examples(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        """First 8 documents: the true pair label and the predicted one."""
        small = {k: v[:8] for k, v in batch.items()}
        pairs, labels = self.make_pairs(small)
        return {"pair_label": labels, "predicted": self.pair_head(self.encoder.hidden_states(pairs)).argmax(1)}
