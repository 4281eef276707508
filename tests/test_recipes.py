"""Recipe tuning scores candidates on a validation split carved from the train part: its images never
enter the pretraining pool, and the split is the same on every call."""
import torch

from selfsup.data import ImageData
from selfsup.recipes import GRID, VALIDATION_PER_CLASS, trial_name, trial_path, tuning_split, winner
from selfsup.methods.base import METHODS


def distinct_images(per_class: int = VALIDATION_PER_CLASS + 7, classes: int = 3) -> ImageData:
    """Images whose first pixels spell their index, so an image can be traced through a split."""
    n = per_class * classes
    images = torch.zeros(n, 1, 4, 4, dtype=torch.uint8)
    images[:, 0, 0, 0], images[:, 0, 0, 1] = torch.arange(n) % 256, torch.arange(n) // 256
    return ImageData(images, torch.arange(n) % classes, [str(c) for c in range(classes)])


def ids(data: ImageData) -> set[int]:
    return set((data.images[:, 0, 0, 0].long() + 256 * data.images[:, 0, 0, 1].long()).tolist())


def test_validation_images_never_enter_the_pool_and_the_split_is_fixed():
    data = distinct_images()
    pool, validation = tuning_split(data)
    assert ids(pool).isdisjoint(ids(validation))
    assert ids(pool) | ids(validation) == set(range(len(data)))
    assert torch.bincount(validation.labels).tolist() == [VALIDATION_PER_CLASS] * 3
    again_pool, again_validation = tuning_split(data)
    assert ids(again_validation) == ids(validation) and ids(again_pool) == ids(pool)


def test_every_candidate_is_a_valid_config_of_its_method():
    from selfsup.config import make_config
    for method, candidates in GRID.items():
        assert candidates[0] == {}, f"{method}: the default comes first"
        for options in candidates:
            make_config(METHODS.get(method).Config, options)  # raises on an unknown field or a bad value


def test_trial_names_and_the_winner():
    assert trial_name({}) == "default"
    assert trial_name({"temperature": 0.1, "lr": 0.003}) == "lr=0.003,temperature=0.1"
    assert "/" not in trial_path(__import__("pathlib").Path("o"), "mocov2", {"encoder_kwargs": {"widths": [1]}}).name
    trials = [{"trial": "default", "linear": 0.80, "knn": 0.7}, {"trial": "a", "linear": 0.82, "knn": 0.6},
              {"trial": "b", "linear": 0.82, "knn": 0.65}]
    assert winner(trials)["trial"] == "b"
    assert winner([{"trial": "x", "linear": 0.8, "knn": 0.7}, {"trial": "default", "linear": 0.8, "knn": 0.7}])["trial"] == "default"
    # A gain below MIN_GAIN (0.5 points) is within rerun noise: the default stays.
    close = [{"trial": "default", "linear": 0.812, "knn": 0.794}, {"trial": "lr=0.003", "linear": 0.815, "knn": 0.796}]
    assert winner(close)["trial"] == "default"
    close[1]["linear"] = 0.817
    assert winner(close)["trial"] == "lr=0.003"


class PretrainCalled(Exception):
    pass


def test_cost_neutral_trials_reuse_the_default_trials_epochs_and_others_calibrate(tmp_path, monkeypatch):
    import json

    import pytest

    import selfsup.recipes as recipes

    calibrated = []
    monkeypatch.setattr(recipes, "calibrate", lambda method, pool, batch_size, options: calibrated.append(options)
                        or {"seconds_per_step": 1.0})

    def fake_pretrain(method, epochs, **kwargs):
        raise PretrainCalled(epochs)
    monkeypatch.setattr(recipes, "pretrain", fake_pretrain)
    pool, validation = tuning_split(distinct_images())

    def epochs_of(options, minutes=3.0):
        with pytest.raises(PretrainCalled) as called:
            recipes.run_trial("simclr", options, minutes, pool, validation, tmp_path)
        return called.value.args[0]

    default = trial_path(tmp_path, "simclr", {})
    default.parent.mkdir(parents=True)
    default.write_text(json.dumps({"epochs": 7, "minutes_budget": 3.0, "quick": False}))
    assert epochs_of({"temperature": 0.1}) == 7 and epochs_of({"lr": 3e-3, "temperature": 0.2}) == 7
    assert calibrated == []
    steps_per_epoch = len(pool) // min(METHODS.get("simclr").default_batch_size, len(pool))
    own = recipes.epochs_within(3.0, 1.0, steps_per_epoch)
    assert epochs_of({"encoder_kwargs": {"widths": [8, 8, 8]}}) == own  # changes the step's cost: calibrates
    assert epochs_of({"temperature": 0.1}, minutes=5.0) == recipes.epochs_within(5.0, 1.0, steps_per_epoch)
    assert calibrated == [{"encoder_kwargs": {"widths": [8, 8, 8]}}, {"temperature": 0.1}]
