"""Frozen features of an evaluation: extracted once, only for the items some draw labels, and kept on disk
keyed by the encoder's weights and the data's bytes."""
import importlib

import pytest
import torch

from selfsup.evaluate.features import FeatureCache, data_fingerprint, extract_features
from selfsup.methods import build_method
from conftest import TINY, synthetic_images

budgets = importlib.import_module("selfsup.evaluate.budgets")  # selfsup.evaluate is also the function


def test_feature_cache_computes_once_and_keys_on_weights_and_data(tmp_path):
    data = synthetic_images(40)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 3))
    calls = []
    extract = lambda m, d: calls.append(len(d)) or m(d.images.float())
    cache = FeatureCache(tmp_path)
    first = cache.get(net, data, extract)
    assert torch.equal(FeatureCache(tmp_path).get(net, data, extract), first) and calls == [40]  # read from disk
    FeatureCache(tmp_path).get(net, data.subset(torch.arange(20)), extract)  # other data: computed
    with torch.no_grad():
        net[1].bias += 1  # other weights: computed
    FeatureCache(tmp_path).get(net, data, extract)
    assert calls == [40, 20, 40] and len(list(tmp_path.glob("*.safetensors"))) == 3
    assert data_fingerprint(data) == data_fingerprint(synthetic_images(40)) != data_fingerprint(synthetic_images(40, seed=1))


def test_sweep_extracts_features_once_and_only_of_drawn_items_with_the_same_accuracies(monkeypatch, tmp_path):
    data = synthetic_images(200, classes=4)
    train, test = data.subset(torch.arange(160)), data.subset(torch.arange(160, 200))
    method = build_method("rotation", data.spec, **TINY)
    sizes = []
    monkeypatch.setattr(budgets, "extract_features", lambda m, d, upto=None: sizes.append(len(d)) or extract_features(m, d, upto))
    ask = dict(budgets=[2, 5], seeds=[0, 1], protocols=["linear", "knn", "random_init"], tune=False)
    rows = budgets.label_sweep(method, train, test, **ask, cache=FeatureCache(tmp_path))
    used = torch.unique(torch.cat([budgets.draw_budget(train.labels, b, s) for b in (2, 5) for s in (0, 1)]))
    assert sizes == [len(used), 40, len(used), 40] and len(used) < 160  # trained and untrained encoder, once each
    # the same accuracies as probes fitted on features of the whole pool, indexed by each draw
    whole = extract_features(method, train), extract_features(method, test)
    for row in (r for r in rows if r["protocol"] in ("linear", "knn")):
        index = budgets.draw_budget(train.labels, row["labels_per_class"], row["seed"])
        accs, _ = budgets.tuned_feature_protocols(whole[0][index], train.labels[index], whole[1], test.labels,
                                                  [row["protocol"]], row["seed"], tune=False)
        assert accs[row["protocol"]] == row["acc"]
    sizes.clear()
    assert budgets.label_sweep(method, train, test, **ask, cache=FeatureCache(tmp_path)) == rows and sizes == []


def test_a_folder_that_cannot_be_written_warns_and_the_features_are_still_returned(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")  # a file where the cache folder should be: mkdir fails
    data, net = synthetic_images(8), torch.nn.Flatten()
    cache = FeatureCache(blocker / "features")
    with pytest.warns(UserWarning, match="frozen features not kept"):
        features = cache.get(net, data, lambda m, d: m(d.images.float()))
    assert features.shape == (8, 784) and cache.folder is None
