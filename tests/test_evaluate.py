import torch

from selfsup.evaluate import finetune, knn_classify, knn_predict, linear_probe, supervised_baseline
from selfsup.evaluate.budgets import summarize
from selfsup.methods import build_method
from selfsup.nets import build_encoder, freeze_upto
from conftest import TINY, synthetic_images


def separable(n=600, classes=5, dim=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(classes, dim, generator=g) * 6
    y = torch.arange(n) % classes
    return centers[y] + torch.randn(n, dim, generator=g), y


def test_knn_and_linear_probe_reach_100_percent_on_separable_features():
    x, y = separable()
    assert knn_classify(x[:500], y[:500], x[500:], y[500:])["acc"] == 1.0
    assert linear_probe(x[:500], y[:500], x[500:], y[500:], epochs=50)["acc"] == 1.0


def test_knn_weighted_vote_hand_example():
    bank = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    # the query is closest to the class-0 item; with k=3 and a low temperature the nearest dominates
    assert knn_predict(bank, labels, torch.tensor([[1.0, 0.0]]), k=3, temperature=0.01).item() == 0
    # with a very high temperature all three weigh about the same, so class 1 (two votes) wins
    assert knn_predict(bank, labels, torch.tensor([[1.0, 0.0]]), k=3, temperature=100.0).item() == 1


def test_freeze_upto_freezes_exactly_the_named_blocks():
    enc = build_encoder("convnet", in_channels=1, image_size=28)
    assert freeze_upto(enc, "conv2") == ["conv1", "conv2"]
    assert all(not p.requires_grad for p in enc.blocks["conv1"].parameters())
    assert all(not p.requires_grad for p in enc.blocks["conv2"].parameters())
    assert all(p.requires_grad for p in enc.blocks["conv3"].parameters())
    assert enc.feature_dim("conv2") == 288 and enc.feature_dim() == 64


def test_finetune_keeps_frozen_blocks_and_learns_the_task():
    data = synthetic_images(n=400, classes=4)
    torch.manual_seed(0)
    method = build_method("rotation", data.spec, **TINY)
    before = {k: v.clone() for k, v in method.encoder.state_dict().items()}
    out = finetune(method, data.subset(torch.arange(200)), data.subset(torch.arange(200, 400)), freeze_upto="conv1", lr=1e-2,
                   epochs=5, min_steps=200)
    assert out["acc"] > 0.9 and out["frozen"] == "conv1" and out["steps"] == 200
    # the method itself is untouched (fine-tuning works on a copy)
    assert all(torch.equal(before[k], v) for k, v in method.encoder.state_dict().items())
    sup = supervised_baseline(method, data.subset(torch.arange(200)), data.subset(torch.arange(200, 400)),
                              epochs=5, min_steps=200)
    assert sup["frozen"] == "" and sup["steps"] == 200


def test_summarize_mean_and_sample_std():
    rows = [{"protocol": "linear", "labels_per_class": 10, "acc": a} for a in (0.5, 0.7)]
    (s,) = summarize(rows)
    assert s["mean"] == 0.6 and abs(s["std"] - (0.02 ** 0.5)) < 1e-12 and s["n"] == 2
