"""NSP (Devlin et al., 2019) and SOP (Lan et al., 2020): exact pair construction and labels; combined MLM+NSP/SOP."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import TINY_OPTIONS, WORDS, fit_batch
from selfsup.data.text import TextData
from selfsup.methods.base import build_method
from selfsup.text.tokenizer import CLS_ID, SEP_ID
from selfsup.views.text import build_pairs, nsp_pairs, segment, sop_pairs

TINY = TINY_OPTIONS["nsp"]


def distinct_windows(n: int, width: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Row i holds ids 100i+10, 100i+11, ... for 2..width subwords (then padding 0), with random word starts."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, width + 1, (n,), generator=g)
    cols = torch.arange(width)
    real = cols < lengths[:, None]
    tokens = torch.where(real, 100 * torch.arange(n)[:, None] + 10 + cols, torch.zeros(n, width, dtype=torch.long))
    word_starts = (torch.rand(n, width, generator=g) < 0.6) & real
    word_starts[:, 0] = True
    return tokens, word_starts


def unpack(pair_ids: torch.Tensor, token_type: torch.Tensor) -> tuple[list[list[int]], list[list[int]]]:
    """Split rows of "[CLS] A [SEP] B [SEP]" back into A and B with plain Python (the reference)."""
    firsts, seconds = [], []
    for ids, types in zip(pair_ids.tolist(), token_type.tolist()):
        firsts.append([t for t, ty in zip(ids, types) if ty == 0 and t not in (0, CLS_ID, SEP_ID)])
        seconds.append([t for t, ty in zip(ids, types) if ty == 1 and t != SEP_ID])
    return firsts, seconds


def window(tokens: torch.Tensor, i: int) -> list[int]:
    return [t for t in tokens[i].tolist() if t != 0]


def starts_a_word(token: int, tokens: torch.Tensor, word_starts: torch.Tensor) -> bool:
    """Token 100i+10+k is row i's k-th subword (`distinct_windows`)."""
    return bool(word_starts[token // 100, token % 100 - 10])


def can_split_on_a_word(word_starts: torch.Tensor, i: int) -> bool:
    return bool(word_starts[i, 1:].any())


@pytest.mark.parametrize("seed", range(4))
def test_nsp_pairs_are_exact(seed):
    n = 9
    tokens, word_starts = distinct_windows(n, seed=seed)
    pairs, labels = nsp_pairs(tokens, word_starts, torch.Generator().manual_seed(seed))
    assert labels.sum().item() == (n + 1) // 2  # exactly half IsNext (rounded up)
    firsts, seconds = unpack(pairs["input_ids"], pairs["token_type_ids"])
    for i in range(n):
        whole, a, b = window(tokens, i), firsts[i], seconds[i]
        split = len(a)
        assert 1 <= split < len(whole) and a == whole[:split]
        assert len(b) == len(whole) - split  # the length IsNext's B has, whatever the label
        if can_split_on_a_word(word_starts, i):
            assert starts_a_word(whole[split], tokens, word_starts)
        if labels[i] == 1:
            assert b == whole[split:]
        else:  # the end of another document, starting on a word
            source = b[0] // 100
            assert source != i and b == window(tokens, source)[-len(b):] and len(b) < len(window(tokens, source))
            assert starts_a_word(b[0], tokens, word_starts)


def test_nsp_negatives_come_from_every_other_row_over_seeds():
    tokens, word_starts = distinct_windows(5)
    tokens = 100 * torch.arange(5)[:, None] + 10 + torch.arange(8)  # every row full, every subword a word:
    word_starts = torch.ones_like(word_starts)  # any other row can give any B
    sources = set()
    for seed in range(60):
        pairs, labels = nsp_pairs(tokens, word_starts, torch.Generator().manual_seed(seed))
        _, seconds = unpack(pairs["input_ids"], pairs["token_type_ids"])
        row = int(torch.nonzero(labels == 0)[0])
        sources.add((seconds[row][0] // 100 - row) % 5)
    assert sources == {1, 2, 3, 4}  # every other row, never itself


@pytest.mark.parametrize("seed", range(4))
def test_sop_pairs_are_exact(seed):
    n = 9
    tokens, word_starts = distinct_windows(n, seed=seed)
    pairs, labels = sop_pairs(tokens, word_starts, torch.Generator().manual_seed(seed))
    assert labels.sum().item() == (n + 1) // 2
    firsts, seconds = unpack(pairs["input_ids"], pairs["token_type_ids"])
    for i in range(n):
        whole = window(tokens, i)
        a, b = (firsts[i], seconds[i]) if labels[i] == 1 else (seconds[i], firsts[i])
        assert a + b == whole and a and b  # the window cut in two, in order or swapped
        if can_split_on_a_word(word_starts, i):
            assert starts_a_word(b[0], tokens, word_starts)


def test_splits_never_start_b_inside_a_word():
    tokens, word_starts = distinct_windows(64, width=20, seed=5)
    word_starts[:, 1:] &= torch.arange(1, 20) % 3 == 0  # words start at 0, 3, 6, ...: most positions are inside
    for task in (nsp_pairs, sop_pairs):
        for seed in range(5):
            pairs, _ = task(tokens, word_starts, torch.Generator().manual_seed(seed))
            firsts, seconds = unpack(pairs["input_ids"], pairs["token_type_ids"])
            for i, (a, b) in enumerate(zip(firsts, seconds)):
                if can_split_on_a_word(word_starts, i):
                    assert starts_a_word(b[0], tokens, word_starts) and starts_a_word(a[0], tokens, word_starts)


# --- no shortcut: a classifier that sees only the layout stays at chance ---------------------------------
PAIRS = 10_000
CHANCE_BOUND = 0.5 + 3 * (0.25 / PAIRS) ** 0.5  # chance plus 3 binomial standard errors: 0.515


def prose(n: int = 400, seed: int = 0) -> TextData:
    """Documents of 1-5 sentences of 2-12 made-up words (a small vocabulary splits many into `##` pieces)."""
    g = torch.Generator().manual_seed(seed)
    syllables = "ka lo mi ten ras ur ph ine sto bel quo dra".split()
    words = ["".join(syllables[j] for j in torch.randint(0, 12, (k,), generator=g).tolist())
             for k in torch.randint(1, 5, (300,), generator=g).tolist()]
    def sentence():
        return " ".join(words[j] for j in torch.randint(0, 300, (int(torch.randint(2, 13, (), generator=g)),),
                                                          generator=g).tolist()) + "."
    texts = [" ".join(sentence() for _ in range(int(torch.randint(1, 6, (), generator=g)))) for _ in range(n)]
    return TextData.from_texts(texts, seq_len=64, vocab_size=150)


def layout_features(pair_ids: torch.Tensor) -> np.ndarray:
    """Per pair: both [SEP] positions, len A, len B, len B - len A and the total length."""
    sep = torch.nonzero(pair_ids == SEP_ID)[:, 1].view(-1, 2)
    a_len, b_len = sep[:, 0] - 1, sep[:, 1] - sep[:, 0] - 1
    return torch.stack([sep[:, 0], sep[:, 1], a_len, b_len, b_len - a_len, a_len + b_len], 1).numpy()


def halves_pairs(task: str, tokens: torch.Tensor, word_starts: torch.Tensor,
                 generator: torch.Generator) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The construction this replaced: each window cut in the middle; NotNext B is another row's second half."""
    n_tokens = (tokens != 0).sum(1)
    zero, half = torch.zeros_like(n_tokens), (n_tokens + 1) // 2
    a, b = segment(tokens, zero, half), segment(tokens, half, n_tokens - half)
    label = (torch.rand(len(tokens), generator=generator) < 0.5).long()
    keep = label.bool()
    if task == "nsp":
        other = torch.roll(torch.arange(len(tokens)), 1)
        return build_pairs(a, half, torch.where(keep[:, None], b, b[other]),
                           torch.where(keep, n_tokens - half, (n_tokens - half)[other]), tokens.shape[1] + 3), label
    return build_pairs(torch.where(keep[:, None], a, b), torch.where(keep, half, n_tokens - half),
                       torch.where(keep[:, None], b, a), torch.where(keep, n_tokens - half, half),
                       tokens.shape[1] + 3), label


def layout_accuracy(make_pairs, data: TextData, seed: int = 0) -> float:
    """Cross-validated accuracy of a decision tree and a logistic regression (the better) on the layout of
    PAIRS pairs built from random batches of 64 documents."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.tree import DecisionTreeClassifier

    g = torch.Generator().manual_seed(seed)
    features, labels = [], []
    for _ in range(-(-PAIRS // 64)):
        batch = data.batch(torch.randperm(len(data), generator=g)[:64])
        pairs, label = make_pairs(batch["pair_tokens"], batch["pair_word_starts"], g)
        features.append(layout_features(pairs["input_ids"]))
        labels.append(label.numpy())
    x, y = np.concatenate(features)[:PAIRS], np.concatenate(labels)[:PAIRS]
    classifiers = (DecisionTreeClassifier(min_samples_leaf=20, random_state=0), LogisticRegression(max_iter=500))
    return max(cross_val_score(c, x, y, cv=5).mean() for c in classifiers)


@pytest.fixture(scope="module")
def corpus() -> TextData:
    return prose()


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_segment_layout_says_nothing_about_the_label(corpus, task):
    """The fix: from [SEP] positions and lengths alone, NSP and SOP labels are guessed at chance."""
    accuracy = layout_accuracy(nsp_pairs if task == "nsp" else sop_pairs, corpus)
    assert accuracy <= CHANCE_BOUND, f"{task}: the layout alone predicts the label {accuracy:.1%} of the time"


@pytest.mark.parametrize("task", ["nsp", "sop"])
def test_the_layout_classifier_catches_the_old_halves(corpus, task):
    """The test above can fail: on the halves it replaced, the same classifier reads the label from lengths."""
    accuracy = layout_accuracy(lambda t, w, g: halves_pairs(task, t, w, g), corpus)
    assert accuracy > 0.6


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
    assert method.encoder.token_type_embedding.weight.grad[1].abs().sum() > 0  # segment B embedding used
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
    losses, _ = fit_batch(method, batch, steps=200, lr=3e-3)  # each step cuts the documents at new splits
    assert sum(losses[-40:]) / 40 < 0.5 * sum(losses[:5]) / 5
