"""Language-model curves: held-out masked-token accuracy and perplexity, against plain reference computations,
and logged per epoch into a run's metrics.csv."""
import math

import torch
import torch.nn.functional as F

from conftest import TINY_OPTIONS, tiny_text
from selfsup.evaluate.text import heldout_lm_metrics
from selfsup.methods.base import build_method
from selfsup.text.tokenizer import PAD_ID
from selfsup.views.text import IGNORE


def moved_off_init(method):
    torch.manual_seed(0)
    with torch.no_grad():
        for p in method.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return method


def test_mlm_heldout_metrics_equal_a_reference_over_the_same_masked_tokens():
    data = tiny_text(20)
    method = moved_off_init(build_method("mlm", data.spec, **TINY_OPTIONS["mlm"])).eval()
    got = heldout_lm_metrics(method, data, batch_size=7, seed=3)  # 3 batches: sums, not means of means
    nll, correct, count = 0.0, 0, 0
    g = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for index in torch.arange(len(data)).split(7):
            batch = data.batch(index)
            corrupted, labels = method.corrupt(batch["input_ids"], g)
            logits = method.mlm_head(method.encoder.hidden_states({"input_ids": corrupted,
                                                                   "attention_mask": batch["attention_mask"]}))
            chosen = labels != IGNORE
            nll += F.cross_entropy(logits[chosen], labels[chosen], reduction="sum").item()
            correct += (logits[chosen].argmax(-1) == labels[chosen]).sum().item()
            count += chosen.sum().item()
    assert math.isclose(got["perplexity"], math.exp(nll / count), rel_tol=1e-5)
    assert got["token_acc"] == correct / count
    assert heldout_lm_metrics(method, data, batch_size=7, seed=3) == got  # the same tokens at every check
    assert method.training is False


def test_clm_heldout_perplexity_is_token_weighted_next_token_cross_entropy():
    data = tiny_text(20)
    method = moved_off_init(build_method("clm", data.spec, **TINY_OPTIONS["clm"])).train()
    got = heldout_lm_metrics(method, data, batch_size=6)
    assert method.training  # restored
    method.eval()
    with torch.no_grad():
        ids = data.input_ids
        logits = method.logits({"input_ids": ids, "attention_mask": ids != PAD_ID})[:, :-1]
    targets = ids[:, 1:].masked_fill(ids[:, 1:] == PAD_ID, IGNORE)
    reference = F.cross_entropy(logits.transpose(1, 2), targets, ignore_index=IGNORE)  # mean over real tokens
    assert math.isclose(got["perplexity"], reference.exp().item(), rel_tol=1e-5)
    real = targets != IGNORE
    assert math.isclose(got["token_acc"], (logits.argmax(-1)[real] == targets[real]).float().mean().item(),
                        rel_tol=1e-6)


def test_methods_without_a_language_model_give_no_heldout_curve():
    data = tiny_text(8)
    assert heldout_lm_metrics(build_method("nsp", data.spec, **TINY_OPTIONS["nsp"]), data) == {}


def test_pretraining_logs_the_heldout_curve_per_epoch(tmp_path):
    from selfsup.runs import RunFolder
    from selfsup.train import TrainConfig, pretrain

    data = tiny_text(48)
    train, heldout = data.subset(torch.arange(40)), data.subset(torch.arange(40, 48))
    method = build_method("mlm", train.spec, **TINY_OPTIONS["mlm"])
    pretrain(method, train, TrainConfig(epochs=2, batch_size=16, knn_every=0, progress_bar=False), tmp_path / "run",
             heldout=heldout)
    rows = [r for r in RunFolder(tmp_path / "run").read_metrics() if r.get("heldout/perplexity")]
    assert len(rows) == 2 and [int(r["epoch"]) for r in rows] == [0, 1]
    assert float(rows[-1]["heldout/perplexity"]) == heldout_lm_metrics(method, heldout)["perplexity"]
    assert all(0 <= float(r["heldout/token_acc"]) <= 1 for r in rows)


def test_only_an_unlabeled_corpus_lends_its_test_split_to_the_curve():
    from selfsup.api import heldout_documents
    from selfsup.data.base import DatasetSplits
    from selfsup.data.splits import held_out_test

    labeled = tiny_text(40)
    assert heldout_documents(held_out_test(DatasetSplits(labeled, None))) is None  # touched once, for accuracy
    unlabeled = labeled.subset(torch.arange(30))
    unlabeled.labels, test = None, labeled.subset(torch.arange(30, 40))
    test.labels = None
    assert heldout_documents(held_out_test(DatasetSplits(unlabeled, test))) is test
