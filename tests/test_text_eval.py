"""Text evaluation: TF-IDF bag of words, pooled features, and the label-budget sweep end to end."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY_TEXT as TINY
from selfsup.data.text import TextData
from selfsup.evaluate.text import (bag_of_words_baseline, summarize_rows, text_features, text_label_sweep, tfidf,
                                   token_counts)
from selfsup.methods.base import build_method


def two_topics(n: int = 40) -> TextData:
    """Class 0 talks about fruit, class 1 about animals: separable by words alone."""
    fruit, animals = "apple banana cherry grape lemon pear".split(), "dog eagle fox owl cat horse".split()
    g = torch.Generator().manual_seed(0)
    texts, labels = [], []
    for i in range(n):
        words = fruit if i % 2 == 0 else animals
        texts.append(" ".join(words[j] for j in torch.randint(0, 6, (8,), generator=g).tolist()))
        labels.append(i % 2)
    return TextData.from_texts(texts, labels, ["fruit", "animals"], seq_len=16, vocab_size=60)


def test_token_counts_skip_specials_and_padding():
    ids = torch.tensor([[1, 5, 6, 5, 2, 0], [1, 7, 2, 0, 0, 0]])
    counts = token_counts(ids, 8)
    assert counts.tolist() == [[0, 0, 0, 0, 0, 2, 1, 0], [0, 0, 0, 0, 0, 0, 0, 1]]


def test_tfidf_matches_the_formula():
    counts = torch.tensor([[2.0, 0.0, 1.0], [0.0, 3.0, 1.0]])
    df = (counts > 0).float().sum(0)
    out = tfidf(counts, df, 2)
    for i in range(2):
        row = [math.log1p(counts[i, j].item()) * (math.log(3 / (1 + df[j].item())) + 1) for j in range(3)]
        norm = math.sqrt(sum(v * v for v in row))
        assert out[i].tolist() == pytest.approx([v / norm for v in row], rel=1e-6)


def test_bag_of_words_separates_two_topics():
    data = two_topics()
    train, test = data.subset(torch.arange(0, 20)), data.subset(torch.arange(20, 40))
    result = bag_of_words_baseline(train, test)
    assert result["acc"] == 1.0 and result["train_acc"] == 1.0


def test_text_features_pool_cls_and_mean():
    data = two_topics(8)
    method = build_method("mlm", data.spec, **TINY).eval()
    x = {"input_ids": data.input_ids, "attention_mask": data.input_ids != 0}
    hidden = method.encoder.hidden_states(x).detach()
    mask = (data.input_ids != 0).float()
    assert torch.allclose(text_features(method, data, "cls"), hidden[:, 0], atol=1e-6)
    mean = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(text_features(method, data, "mean"), mean, atol=1e-6)
    assert torch.allclose(text_features(method, data), mean, atol=1e-6)  # MLM's default: the mean


@pytest.mark.parametrize("name", ["mlm", "clm", "mlm-nsp", "mlm-sop"])
def test_language_models_pool_the_mean_of_non_pad_tokens_by_default(name):
    """MLM trains no loss on [CLS] (and a decoder's [CLS] sees only itself): features average every real token."""
    data = two_topics(8)
    method = build_method(name, data.spec, **TINY).eval()
    hidden = method.encoder.hidden_states(method.encoder_input(data.batch(torch.arange(8)))).detach()
    real = data.input_ids != 0
    explicit = torch.stack([hidden[i, real[i]].mean(0) for i in range(8)])  # a plain loop as the reference
    assert real.sum(1).min() < real.shape[1]  # some padding, so the mean must skip it
    assert torch.allclose(text_features(method, data), explicit, atol=1e-5)
    assert not torch.allclose(text_features(method, data), hidden[:, 0], atol=1e-3)


@pytest.mark.parametrize("name", ["nsp", "sop"])
def test_pair_tasks_feed_segment_a_and_pool_cls(name):
    """The pair classifier reads [CLS]; a single document is segment A (token type 0), as in pretraining."""
    data = two_topics(8)
    method = build_method(name, data.spec, **TINY).eval()
    with torch.no_grad():
        method.encoder.token_type_embedding.weight[0].copy_(torch.linspace(-1, 1, method.encoder.dim))
    x = {"input_ids": data.input_ids, "attention_mask": data.input_ids != 0,
         "token_type_ids": torch.zeros_like(data.input_ids)}
    hidden = method.encoder.hidden_states(x).detach()
    assert torch.allclose(text_features(method, data), hidden[:, 0], atol=1e-6)
    as_segment_b = method.encoder.hidden_states(x | {"token_type_ids": torch.ones_like(data.input_ids)})
    assert not torch.allclose(text_features(method, data), as_segment_b[:, 0].detach(), atol=1e-3)


def test_label_sweep_runs_every_protocol_per_budget_and_seed():
    data = two_topics()
    train, test = data.subset(torch.arange(0, 30)), data.subset(torch.arange(30, 40))
    method = build_method("sop", data.spec, **TINY)
    rows = text_label_sweep(method, train, test, budgets=(2, None), seeds=(0, 1),
                            finetune_kwargs={"min_steps": 3, "max_steps": 3, "batch_size": 4})
    protocols = {"linear_cls", "linear_mean", "finetune", "scratch", "bow"}
    assert {(r["labels_per_class"], r["seed"], r["protocol"]) for r in rows} == {
        (b, s, p) for b in (2, "all") for s in (0, 1) for p in protocols}
    assert all(0.0 <= r["acc"] <= 1.0 for r in rows)
    summary = summarize_rows(rows)
    assert summary[("all", "bow")] == (1.0, 0.0)
    accs = [r["acc"] for r in rows if r["labels_per_class"] == 2 and r["protocol"] == "finetune"]
    assert summary[(2, "finetune")][0] == pytest.approx(sum(accs) / 2)
