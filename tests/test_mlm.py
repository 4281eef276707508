"""MLM (Devlin et al., 2019): exact 15% choice, the 80/10/10 corruption, loss only on chosen positions."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from conftest import TINY_OPTIONS, WORDS, fit_batch, tiny_text
from selfsup.data.text import TextData
from selfsup.methods.base import build_method
from selfsup.losses.classification import masked_lm_loss
from selfsup.text.tokenizer import CLS_ID, MASK_ID, NUM_SPECIAL, PAD_ID, SEP_ID
from selfsup.views.text import IGNORE, choose_positions, mask_tokens

TINY = TINY_OPTIONS["mlm"]


def padded_ids(n: int, seq_len: int, vocab: int, seed: int = 0) -> torch.Tensor:
    """[CLS] w... [SEP] [PAD]... rows with lengths 1..seq_len-2 of ordinary ids."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, seq_len - 1, (n,), generator=g)
    ids = torch.randint(NUM_SPECIAL, vocab, (n, seq_len), generator=g)
    pos = torch.arange(seq_len)
    ids = torch.where(pos <= lengths[:, None], ids, torch.full_like(ids, PAD_ID))
    ids[:, 0] = CLS_ID
    ids[torch.arange(n), lengths + 1] = SEP_ID
    return ids


def test_exactly_15_percent_of_ordinary_tokens_chosen_per_row():
    ids = padded_ids(500, 40, 1000)
    chosen = choose_positions(ids >= NUM_SPECIAL, 0.15, torch.Generator().manual_seed(1))
    n = (ids >= NUM_SPECIAL).sum(1)
    expected = torch.tensor([max(1, round(0.15 * k)) for k in n.tolist()])
    assert torch.equal(chosen.sum(1), expected)
    assert not chosen[ids < NUM_SPECIAL].any()  # never [CLS], [SEP] or [PAD]


def test_fixed_seed_gives_the_same_corruption_and_other_seeds_differ():
    ids = padded_ids(64, 32, 500)
    a = mask_tokens(ids, 500, generator=torch.Generator().manual_seed(3))
    b = mask_tokens(ids, 500, generator=torch.Generator().manual_seed(3))
    c = mask_tokens(ids, 500, generator=torch.Generator().manual_seed(4))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_labels_are_the_originals_at_chosen_positions_and_ignored_elsewhere():
    ids = padded_ids(200, 32, 500)
    corrupted, labels = mask_tokens(ids, 500, generator=torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    assert torch.equal(labels[chosen], ids[chosen])
    assert torch.equal(corrupted[~chosen], ids[~chosen])  # nothing outside the chosen positions changes


def test_split_fractions_are_exact_at_the_extremes():
    ids = padded_ids(100, 32, 500)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    all_mask, labels = mask_tokens(ids, 500, mask_frac=1.0, random_frac=0.0, generator=g())
    chosen = labels != IGNORE
    assert (all_mask[chosen] == MASK_ID).all()
    all_random, labels = mask_tokens(ids, 500, mask_frac=0.0, random_frac=1.0, generator=g())
    replaced = all_random[labels != IGNORE]
    assert ((replaced >= NUM_SPECIAL) & (replaced < 500)).all()
    assert (replaced != ids[labels != IGNORE]).float().mean() > 0.99  # random, so 1/495 may coincide
    unchanged, labels = mask_tokens(ids, 500, mask_frac=0.0, random_frac=0.0, generator=g())
    assert torch.equal(unchanged, ids) and (labels != IGNORE).sum() > 0


def test_proportions_hold_on_a_large_sample():
    vocab = 5000
    ids = padded_ids(4000, 64, vocab)
    corrupted, labels = mask_tokens(ids, vocab, generator=torch.Generator().manual_seed(0))
    chosen = labels != IGNORE
    ordinary = ids >= NUM_SPECIAL
    assert abs(chosen.sum() / ordinary.sum() - 0.15) < 0.01  # per-row rounding, at least 1 per row
    total = chosen.sum().item()  # about 19k chosen tokens: 3 sigma of the 10% share is ~0.7%
    masked = (corrupted[chosen] == MASK_ID).sum().item() / total
    kept = (corrupted[chosen] == ids[chosen]).sum().item() / total
    random = 1 - masked - kept
    assert abs(masked - 0.8) < 0.01 and abs(random - 0.1) < 0.01 and abs(kept - 0.1) < 0.01


def test_loss_equals_full_cross_entropy_with_ignored_positions_and_no_gradient_there():
    data = tiny_text()
    method = build_method("mlm", data.spec, **TINY)
    ids = data.batch(torch.arange(8))["input_ids"]
    corrupted, labels = method.corrupt(ids, torch.Generator().manual_seed(0))
    hidden = method.encoder.hidden_states({"input_ids": corrupted, "attention_mask": ids != PAD_ID})
    hidden = hidden.detach().requires_grad_(True)
    loss, _ = masked_lm_loss(method.mlm_head, hidden, labels)
    reference = F.cross_entropy(method.mlm_head(hidden).flatten(0, 1), labels.flatten(), ignore_index=-100)
    assert torch.allclose(loss, reference, atol=1e-6)
    loss.backward()
    per_position = hidden.grad.abs().sum(-1)
    chosen = labels != IGNORE
    assert (per_position[~chosen] == 0).all() and (per_position[chosen] > 0).all()


def test_output_layer_is_tied_and_examples_show_the_chosen_tokens():
    data = tiny_text()
    method = build_method("mlm", data.spec, **TINY)
    batch = data.batch(torch.arange(8))
    assert method.mlm_head.token_embedding is method.encoder.token_embedding  # tied output layer
    assert set(method.examples(batch)) == {"chosen_tokens", "correct_predictions"}


def test_loss_decreases_on_a_tiny_batch():
    """Documents are runs of consecutive words from a cycle, so every masked word follows from its neighbours."""
    torch.manual_seed(0)
    texts = [" ".join(WORDS[(start + i) % len(WORDS)] for i in range(10)) for start in range(len(WORDS))]
    data = TextData.from_texts(texts, seq_len=16, vocab_size=60)
    method = build_method("mlm", data.spec, **TINY)
    batch = data.batch(torch.arange(16))
    losses, _ = fit_batch(method, batch, steps=200, lr=3e-3)
    assert sum(losses[-20:]) / 20 < 0.75 * sum(losses[:5]) / 5


def test_weights_of_the_old_hand_written_text_transformer_get_a_clear_error(tmp_path):
    from selfsup.errors import SelfSupError
    from selfsup.runs import load_state

    method = build_method("mlm", tiny_text().spec, **TINY_OPTIONS["mlm"])
    old = {"encoder.blocks.embed.token.weight": torch.zeros(60, 32), "encoder.norm.weight": torch.ones(32)}
    with pytest.raises(SelfSupError, match="hand-written Transformer .* pretrain the run again"):
        load_state(method, old, tmp_path / "weights.safetensors")
