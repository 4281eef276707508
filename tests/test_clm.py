"""CLM (Radford et al., 2018): no looking ahead, next-token loss on real tokens, perplexity, sampling."""
from __future__ import annotations

import math

import pytest
import torch

from conftest import TINY_OPTIONS, tiny_text
from selfsup.data.text import TextData
from selfsup.methods.base import build_method
from selfsup.nets.registry import build_encoder
from selfsup.text.generate import generate, generate_from_run, sample_next
from selfsup.text.tokenizer import NUM_SPECIAL, SEP_ID
from selfsup.views.text import next_token_targets

TINY = TINY_OPTIONS["clm"]


def test_changing_a_later_token_leaves_earlier_logits_unchanged():
    data = tiny_text()
    method = build_method("clm", data.spec, **TINY).eval()
    x = {"input_ids": data.input_ids[:4].clone(), "attention_mask": data.input_ids[:4] != 0}
    t = 5
    changed = {"input_ids": x["input_ids"].clone(), "attention_mask": x["attention_mask"]}
    changed["input_ids"][:, t] = NUM_SPECIAL + (x["input_ids"][:, t] + 1 - NUM_SPECIAL) % 10
    before, after = method.logits(x), method.logits(changed)
    assert torch.allclose(before[:, :t], after[:, :t], atol=1e-6)
    assert not torch.allclose(before[:, t], after[:, t], atol=1e-4)


def test_the_bidirectional_encoder_does_look_ahead():
    enc = build_encoder("text_encoder", vocab_size=60, seq_len=24, **TINY["encoder_kwargs"]).eval()
    ids = torch.randint(NUM_SPECIAL, 60, (2, 12))
    changed = ids.clone()
    changed[:, 8] = NUM_SPECIAL + (ids[:, 8] + 1 - NUM_SPECIAL) % 50
    h1 = enc.hidden_states({"input_ids": ids, "attention_mask": torch.ones_like(ids, dtype=torch.bool)})
    h2 = enc.hidden_states({"input_ids": changed, "attention_mask": torch.ones_like(ids, dtype=torch.bool)})
    assert not torch.allclose(h1[:, :8], h2[:, :8], atol=1e-4)


def test_targets_are_the_next_tokens_with_padding_ignored():
    ids = torch.tensor([[1, 7, 8, 2, 0, 0], [1, 9, 10, 11, 12, 2]])
    assert next_token_targets(ids).tolist() == [[7, 8, 2, -100, -100], [9, 10, 11, 12, 2]]


def test_loss_is_next_token_cross_entropy_and_perplexity_its_exp():
    data = tiny_text()
    method = build_method("clm", data.spec, **TINY)
    batch = data.batch(torch.arange(6))
    loss, metrics = method.loss(batch)
    logp = method.logits(batch).log_softmax(-1)
    ids = batch["input_ids"]
    nll, count = 0.0, 0
    for i in range(len(ids)):  # plain reference: every real next token, one by one
        for t in range(ids.shape[1] - 1):
            if ids[i, t + 1] != 0:
                nll -= logp[i, t, ids[i, t + 1]].item()
                count += 1
    assert math.isclose(loss.item(), nll / count, rel_tol=1e-5)
    assert math.isclose(float(metrics["perplexity"]), math.exp(nll / count), rel_tol=1e-5)


def test_examples_give_the_perplexity_of_each_text():
    data = tiny_text()
    method = build_method("clm", data.spec, **TINY)
    batch = data.batch(torch.arange(8))
    assert method.examples(batch)["perplexity"].shape == (8,)


def test_sampling_never_draws_special_tokens_except_sep_and_top1_is_greedy():
    logits = torch.zeros(3, 20)
    logits[:, 0] = 50.0  # [PAD] most likely, must still be excluded
    logits[0, 7], logits[1, SEP_ID], logits[2, 12] = 10.0, 10.0, 10.0
    assert sample_next(logits, 1.0, 1, None).tolist() == [7, SEP_ID, 12]
    draws = sample_next(logits.repeat(200, 1), 5.0, None, torch.Generator().manual_seed(0))
    assert ((draws >= NUM_SPECIAL) | (draws == SEP_ID)).all()


def test_overfit_model_generates_its_training_sentence():
    torch.manual_seed(0)
    sentence = "apple banana cherry dog eagle fox"
    data = TextData.from_texts([sentence] * 4 + ["moon nest owl pear"], seq_len=16, vocab_size=60)
    method = build_method("clm", data.spec, **TINY)
    opt = torch.optim.Adam(method.parameters(), lr=1e-2)
    batch = data.batch(torch.arange(4))
    first = method.loss(batch)[0].item()
    for _ in range(80):
        loss, _ = method.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1 * first
    assert generate(method, data.tokenizer, "apple", temperature=0.0) == sentence
    assert generate(method, data.tokenizer, "", seed=1, top_k=1) == sentence


def test_generate_from_a_run_folder(tmp_path):
    from dataclasses import asdict

    from selfsup.runs import RunFolder, save_weights
    from selfsup.errors import SelfSupError
    torch.manual_seed(0)
    data = tiny_text()
    method = build_method("clm", data.spec, **TINY)
    run = RunFolder(tmp_path / "run")
    run.path.mkdir()
    run.write_config({"method": "clm", "method_config": asdict(method.config), "spec": asdict(data.spec)})
    save_weights(method, run.weights)
    data.save_to(run.path)
    texts = generate_from_run(str(run.path), prompt="apple", max_new_tokens=5, samples=2, seed=3)
    assert texts == [generate(method, data.tokenizer, "apple", 5, 0.8, 40, seed) for seed in (3, 4)]
    assert all(t.startswith("apple") for t in texts)
    mlm = build_method("mlm", data.spec, **TINY)
    run.write_config({"method": "mlm", "method_config": asdict(mlm.config), "spec": asdict(data.spec)})
    save_weights(mlm, run.weights)
    with pytest.raises(SelfSupError, match="causal LM"):
        generate_from_run(str(run.path))
