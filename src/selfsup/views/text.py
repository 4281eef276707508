"""Token views and pseudo-labels of the text methods, batched on the batch's device.

A text batch is the dict of `selfsup.data.text` (`input_ids` (N, L), `attention_mask`, and for the
sentence-pair tasks `segments` (N, 2, S) with `segment_lengths` (N, 2)); special tokens have the fixed
ids of `selfsup.text.tokenizer`. Labels the loss skips are `IGNORE` (F.cross_entropy's ignore_index).
- `single_text`, `token_input`: what the encoder reads from a whole document, or from bare token ids;
- `mask_tokens`: BERT's masked-LM corruption (Devlin et al., 2019);
- `next_token_targets`: the causal LM's targets (GPT, Radford et al., 2018);
- `nsp_pairs`, `sop_pairs`: "[CLS] A [SEP] B [SEP]" pairs for next-sentence (BERT) and sentence-order
  (ALBERT, Lan et al., 2020) prediction, with their labels.
"""
from __future__ import annotations

import torch
from torch import Tensor

from selfsup.errors import SelfSupError
from selfsup.text.tokenizer import CLS_ID, MASK_ID, NUM_SPECIAL, PAD_ID, SEP_ID

IGNORE = -100  # label of positions the loss skips (F.cross_entropy's ignore_index)


# --- what the encoder reads --------------------------------------------------------------------------
def single_text(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The encoder's downstream input: the whole document, [CLS] ... [SEP] (no segment pair)."""
    return {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}


def token_input(input_ids: Tensor) -> dict[str, Tensor]:
    """The encoder input for bare token ids (N, L): attention on every token but [PAD]."""
    return {"input_ids": input_ids, "attention_mask": input_ids != PAD_ID}


# --- masked language model (BERT) ----------------------------------------------------------------
def rand(shape: torch.Size, device: torch.device, generator: torch.Generator | None) -> Tensor:
    return torch.rand(shape, device=device, generator=generator)


def choose_positions(maskable: Tensor, prob: float, generator: torch.Generator | None = None) -> Tensor:
    """Bool (N, L): exactly max(1, round(prob * n_i)) of the n_i maskable positions of each row, at random."""
    count = maskable.sum(1)
    want = torch.where(count > 0, (count * prob).round().clamp(min=1), torch.zeros_like(count))
    scores = rand(maskable.shape, maskable.device, generator).masked_fill(~maskable, 2.0)  # unmaskable last
    rank = scores.argsort(1).argsort(1)
    return rank < want[:, None]


def mask_tokens(input_ids: Tensor, vocab_size: int, prob: float = 0.15, mask_frac: float = 0.8,
                random_frac: float = 0.1, generator: torch.Generator | None = None) -> tuple[Tensor, Tensor]:
    """BERT corruption: (corrupted ids, labels) with labels = the original id at chosen positions, else -100."""
    chosen = choose_positions(input_ids >= NUM_SPECIAL, prob, generator)
    u = rand(input_ids.shape, input_ids.device, generator)
    to_mask = chosen & (u < mask_frac)
    to_random = chosen & (u >= mask_frac) & (u < mask_frac + random_frac)
    random_ids = torch.randint(NUM_SPECIAL, vocab_size, input_ids.shape, device=input_ids.device, generator=generator)
    corrupted = torch.where(to_mask, torch.full_like(input_ids, MASK_ID), input_ids)
    corrupted = torch.where(to_random, random_ids, corrupted)
    labels = torch.where(chosen, input_ids, torch.full_like(input_ids, IGNORE))
    return corrupted, labels


# --- causal language model (GPT) ----------------------------------------------------------------
def next_token_targets(input_ids: Tensor) -> Tensor:
    """Target at position t is the token at t+1; padding is ignored. Shape (N, L-1)."""
    targets = input_ids[:, 1:]
    return targets.masked_fill(targets == PAD_ID, IGNORE)


# --- sentence pairs (BERT's NSP, ALBERT's SOP) -----------------------------------------------------
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


def sop_pairs(segments: Tensor, lengths: Tensor,
              generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """(A, B) for label 1 and (B, A) for label 0, A and B consecutive segments of the same document."""
    in_order = half_positive(len(segments), segments.device, generator)
    keep = in_order[:, None]
    first = torch.where(keep, segments[:, 0], segments[:, 1])
    second = torch.where(keep, segments[:, 1], segments[:, 0])
    first_len = torch.where(in_order, lengths[:, 0], lengths[:, 1])
    second_len = torch.where(in_order, lengths[:, 1], lengths[:, 0])
    return build_pairs(first, first_len, second, second_len), in_order.long()
