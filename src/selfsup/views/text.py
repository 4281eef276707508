"""Token views and pseudo-labels of the text methods, batched on the batch's device.

A text batch is the dict of `selfsup.data.text` (`input_ids` (N, L), `attention_mask`, and for the
sentence-pair tasks `pair_tokens` (N, W) with `pair_word_starts` (N, W)); special tokens have the fixed
ids of `selfsup.text.tokenizer`. Labels the loss skips are `IGNORE` (F.cross_entropy's ignore_index).
- `single_text`, `single_segment`, `token_input`: what the encoder reads from a whole document (as segment
  A, token type 0, for pair-trained encoders), or from bare token ids;
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


def single_segment(batch: dict[str, Tensor]) -> dict[str, Tensor]:
    """The whole document as segment A (token type 0): how a pair-trained encoder reads one text (BERT)."""
    return single_text(batch) | {"token_type_ids": torch.zeros_like(batch["input_ids"])}


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
# Each row holds a document's pair window (`pair_tokens` (N, W), [PAD] after its n subwords) and which
# subwords start a word (`pair_word_starts`). A pair cuts the window at a split p: A = window[:p] and the
# true continuation B = window[p:n]. The layout (len A, len B) is drawn the same way whatever the label,
# so the [SEP] positions say nothing about it (the old halves gave NSP away 96% of the time, SOP 72%).
def gather_or_pad(tokens: Tensor, index: Tensor, valid: Tensor) -> Tensor:
    """tokens[i, index[i, j]] where valid[i, j], else [PAD]."""
    picked = tokens.gather(1, index.clamp(0, tokens.shape[1] - 1))
    return torch.where(valid, picked, torch.full_like(picked, PAD_ID))


def segment(tokens: Tensor, start: Tensor, length: Tensor) -> Tensor:
    """Rows (N, W): tokens[i, start[i] : start[i] + length[i]], then [PAD]."""
    cols = torch.arange(tokens.shape[1], device=tokens.device).expand(len(tokens), -1)
    return gather_or_pad(tokens, start[:, None] + cols, cols < length[:, None])


def build_pairs(first: Tensor, first_len: Tensor, second: Tensor, second_len: Tensor,
                width: int | None = None) -> dict[str, Tensor]:
    """"[CLS] A [SEP] B [SEP] [PAD]..." rows of length `width` (default 2S+3) from padded segments (N, S)
    and their lengths (N,); A and B together must hold at most width - 3 subwords."""
    n, seg = first.shape
    pos = torch.arange(width or 2 * seg + 3, device=first.device).expand(n, -1)
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


def pick(level: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Index along the last dim of an entry of the highest `level` (ints), uniformly among ties."""
    return (level.float() + rand(level.shape, level.device, generator)).argmax(-1)


def split_levels(word_starts: Tensor, lengths: Tensor) -> Tensor:
    """(N, W): 2 where a split leaves both sides non-empty and B starts a word, 1 mid-word, -1 impossible.
    (A mid-word split is chosen only where the window has no word start after its first subword.)"""
    pos = torch.arange(word_starts.shape[1], device=word_starts.device)
    possible = (pos >= 1) & (pos < lengths[:, None])
    return torch.where(possible, 1 + word_starts.long(), torch.full_like(word_starts, -1, dtype=torch.long))


def segment_pair(tokens: Tensor, split: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """(A, len A, B, len B): the window cut at `split`, B its true continuation."""
    zero = torch.zeros_like(split)
    return segment(tokens, zero, split), split, segment(tokens, split, lengths - split), lengths - split


def mirrored_split_levels(word_starts: Tensor, lengths: Tensor) -> Tensor:
    """`split_levels` doubled, plus 1 where the mirror split n - p also starts a word.

    Splits at word starts are denser near a document's start (its end is often punctuation glued to a
    word), so a uniform word-start split makes A shorter than B more often than not, and swapping them
    shows: lengths alone told SOP's order 55% of the time. Drawn among splits whose mirror is as good,
    p and n - p are equally likely, so (len A, len B) and its swap (len B, len A) have the same law.
    """
    pos = torch.arange(word_starts.shape[1], device=word_starts.device)
    mirror = (lengths[:, None] - pos).clamp(0, word_starts.shape[1] - 1)
    level = split_levels(word_starts, lengths)
    return torch.where(level > 0, 2 * level + word_starts.gather(1, mirror).long(), level)


def sop_pairs(tokens: Tensor, word_starts: Tensor,
              generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """(A, B) for label 1 and (B, A) for label 0: the window cut at a random word start (ALBERT's SOP)."""
    lengths = (tokens != PAD_ID).sum(1)
    split = pick(mirrored_split_levels(word_starts, lengths), generator)
    a, a_len, b, b_len = segment_pair(tokens, split, lengths)
    in_order = half_positive(len(tokens), tokens.device, generator)
    keep = in_order[:, None]
    first, second = torch.where(keep, a, b), torch.where(keep, b, a)
    first_len, second_len = torch.where(in_order, a_len, b_len), torch.where(in_order, b_len, a_len)
    return build_pairs(first, first_len, second, second_len, tokens.shape[1] + 3), in_order.long()


def tail_levels(word_starts: Tensor, lengths: Tensor, split_level: Tensor) -> tuple[Tensor, Tensor]:
    """For row i cut at p and another row j: the start q = n_j - (n_i - p) of j's last n_i - p subwords
    (N, W, N), and how good that NotNext B is: 2 + split level when it starts a word, 1 + split level
    mid-word, -1 when j is row i or too short to give n_i - p subwords after its first."""
    n = len(lengths)
    b_len = lengths[:, None] - torch.arange(word_starts.shape[1], device=lengths.device)  # (N, W)
    q = lengths[None, None, :] - b_len[:, :, None]
    other = ~torch.eye(n, dtype=torch.bool, device=lengths.device)[:, None, :]
    usable = (q >= 1) & other & (split_level[:, :, None] > 0)
    on_word = word_starts[torch.arange(n, device=lengths.device), q.clamp(0, word_starts.shape[1] - 1)]
    level = 2 * split_level[:, :, None] + on_word.long()
    return q, torch.where(usable, level, torch.full_like(level, -1))


def nsp_pairs(tokens: Tensor, word_starts: Tensor,
              generator: torch.Generator | None = None) -> tuple[dict[str, Tensor], Tensor]:
    """(A, its continuation B) for label 1 (IsNext), (A, the end of another row's document) for label 0.

    As BERT's create_pretraining_data.py, the NotNext B is as long as the IsNext B would have been
    (target_b_length = target length - len(A)): here the rest of A's window. The split p is drawn among the
    word starts for which some other row can give that many subwords ending its document and starting on a
    word, then the label: so (len A, len B) has the same law under both labels.
    """
    n = len(tokens)
    if n < 2:
        raise SelfSupError("next sentence prediction needs at least 2 documents per batch")
    lengths = (tokens != PAD_ID).sum(1)
    q, level = tail_levels(word_starts, lengths, split_levels(word_starts, lengths))
    split_level = level.max(2).values
    split_level = torch.where(split_level >= 0, split_level, split_levels(word_starts, lengths) - 3)  # no partner
    split = pick(split_level, generator)
    rows = torch.arange(n, device=tokens.device)
    partner = pick(level[rows, split] - 3 * torch.eye(n, dtype=torch.long, device=tokens.device), generator)
    a, a_len, b, b_len = segment_pair(tokens, split, lengths)
    start = q[rows, split, partner].clamp(min=1)  # < 1 only in a batch with no document long enough
    is_next = half_positive(n, tokens.device, generator)
    other_b = segment(tokens[partner], start, lengths[partner] - start)
    other_len = lengths[partner] - start
    second = torch.where(is_next[:, None], b, other_b)
    second_len = torch.where(is_next, b_len, other_len)
    return build_pairs(a, a_len, second, second_len, tokens.shape[1] + 3), is_next.long()
