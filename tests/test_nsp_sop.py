"""NSP (Devlin et al., 2019) and SOP (Lan et al., 2020): exact pair construction and labels; combined MLM+NSP/SOP."""
from __future__ import annotations

import pytest
import torch

from conftest import TINY_OPTIONS, WORDS, fit_batch
from selfsup.data.text import TextData
from selfsup.methods.base import build_method
from selfsup.text.tokenizer import CLS_ID, SEP_ID
from selfsup.views.text import build_pairs, nsp_pairs, sop_pairs

TINY = TINY_OPTIONS["nsp"]


def distinct_segments(n: int, seg: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    """Row i's first segment holds ids 100i+10.., its second 100i+50..; lengths vary; padding is 0."""
    lengths = torch.stack([torch.arange(n) % seg + 1, (torch.arange(n) + 1) % seg + 1], 1)
    base = 100 * torch.arange(n)[:, None, None] + torch.tensor([10, 50])[None, :, None] + torch.arange(seg)
    segments = torch.where(torch.arange(seg) < lengths[:, :, None], base, torch.zeros_like(base))
    return segments, lengths


def unpack(pair_ids: torch.Tensor, token_type: torch.Tensor) -> tuple[list[list[int]], list[list[int]]]:
    """Split rows of "[CLS] A [SEP] B [SEP]" back into A and B with plain Python (the reference)."""
    firsts, seconds = [], []
    for ids, types in zip(pair_ids.tolist(), token_type.tolist()):
        firsts.append([t for t, ty in zip(ids, types) if ty == 0 and t not in (0, CLS_ID, SEP_ID)])
        seconds.append([t for t, ty in zip(ids, types) if ty == 1 and t != SEP_ID])
    return firsts, seconds


def tokens(segment: torch.Tensor, length: torch.Tensor) -> list[int]:
    return segment[:length].tolist()


def test_build_pairs_exact_layout():
    first, first_len = torch.tensor([[7, 8, 0], [9, 0, 0]]), torch.tensor([2, 1])
    second, second_len = torch.tensor([[5, 0, 0], [11, 12, 13]]), torch.tensor([1, 3])
    pairs = build_pairs(first, first_len, second, second_len)
    assert pairs["input_ids"].tolist() == [[CLS_ID, 7, 8, SEP_ID, 5, SEP_ID, 0, 0, 0],
                                           [CLS_ID, 9, SEP_ID, 11, 12, 13, SEP_ID, 0, 0]]
    assert pairs["token_type_ids"].tolist() == [[0, 0, 0, 0, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1, 1, 0, 0]]
    assert torch.equal(pairs["attention_mask"], pairs["input_ids"] != 0)


@pytest.mark.parametrize("n", [2, 7, 16])
def test_nsp_labels_are_exact(n):
    segments, lengths = distinct_segments(n)
    pairs, labels = nsp_pairs(segments, lengths, torch.Generator().manual_seed(n))
    assert labels.sum().item() == (n + 1) // 2  # exactly half IsNext (rounded up)
    firsts, seconds = unpack(pairs["input_ids"], pairs["token_type_ids"])
    true_second = [tokens(segments[i, 1], lengths[i, 1]) for i in range(n)]
    for i in range(n):
        assert firsts[i] == tokens(segments[i, 0], lengths[i, 0])
        if labels[i] == 1:
            assert seconds[i] == true_second[i]
        else:  # another document's second segment
            assert seconds[i] != true_second[i] and seconds[i] in true_second


def test_nsp_negatives_come_from_every_other_row_over_seeds():
    segments, lengths = distinct_segments(5)
    sources = set()
    for seed in range(40):
        pairs, labels = nsp_pairs(segments, lengths, torch.Generator().manual_seed(seed))
        _, seconds = unpack(pairs["input_ids"], pairs["token_type_ids"])
        row = int(torch.nonzero(labels == 0)[0])
        sources.add((seconds[row][0] // 100) - row)
    assert {s % 5 for s in sources} == {1, 2, 3, 4}  # every shift but 0


@pytest.mark.parametrize("n", [1, 6, 9])
def test_sop_labels_are_exact(n):
    segments, lengths = distinct_segments(n)
    pairs, labels = sop_pairs(segments, lengths, torch.Generator().manual_seed(n))
    assert labels.sum().item() == (n + 1) // 2
    firsts, seconds = unpack(pairs["input_ids"], pairs["token_type_ids"])
    for i in range(n):
        a, b = tokens(segments[i, 0], lengths[i, 0]), tokens(segments[i, 1], lengths[i, 1])
        assert (firsts[i], seconds[i]) == ((a, b) if labels[i] == 1 else (b, a))


def cyclic_text(n: int = 16) -> TextData:
    """`n` documents of 12 consecutive words of WORDS, each starting one word later than the last."""
    texts = [" ".join(WORDS[(s + i) % len(WORDS)] for i in range(12)) for s in range(n)]
    return TextData.from_texts(texts, [i % 2 for i in range(n)], ["even", "odd"], seq_len=24, vocab_size=60)


@pytest.mark.parametrize("name", ["nsp", "sop", "mlm-nsp", "mlm-sop"])
def test_pair_input_uses_segment_b_and_combined_losses_add_up(name):
    torch.manual_seed(0)
    data = cyclic_text()
    method = build_method(name, data.spec, **TINY)
    batch = data.batch(torch.arange(8))
    loss, metrics = method.loss(batch)
    loss.backward()
    assert method.encoder.blocks["embed"].token_type.weight.grad[1].abs().sum() > 0  # segment B embedding used
    if name.startswith("mlm-"):  # the combined methods: the sum of both losses
        assert torch.allclose(loss.detach(), metrics["mlm_loss"] + metrics["pair_loss"])
    assert method.examples(batch)["pair_label"].shape == (8,)


def test_combined_method_masks_the_pair_input_but_not_its_specials():
    torch.manual_seed(0)
    data = cyclic_text()
    method = build_method("mlm-sop", data.spec, **TINY)
    seen = {}
    original = method.encoder.hidden_states

    def spy(x, upto=None):
        seen.update(x)
        return original(x, upto)
    method.encoder.hidden_states = spy
    batch = data.batch(torch.arange(16))
    pairs, _ = method.make_pairs(batch)
    method.loss(batch)
    special = (seen["input_ids"] == CLS_ID) | (seen["input_ids"] == SEP_ID)
    assert special.sum(1).tolist() == [3] * 16  # [CLS] A [SEP] B [SEP] kept intact
    assert (seen["input_ids"] == 3).any()  # some [MASK]
    assert "token_type_ids" in seen


def test_sop_loss_decreases_on_a_tiny_batch():
    torch.manual_seed(0)
    data = cyclic_text()
    method = build_method("sop", data.spec, **TINY)
    batch = data.batch(torch.arange(16))
    losses, _ = fit_batch(method, batch, steps=120, lr=3e-3)
    assert sum(losses[-20:]) / 20 < 0.5 * sum(losses[:5]) / 5
