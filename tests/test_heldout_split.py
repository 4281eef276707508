"""The held-out test set never enters a pretraining pool, is recorded in the run folder, and evaluation on
the run's own data uses exactly that set (through the API and the CLI, for image folders and .npz files)."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import selfsup.api as api
import selfsup.train
from selfsup.cli import main
from selfsup.data import DATASETS, DatasetSplits, ImageData, load_dataset
from selfsup.data.splits import held_out_test
from selfsup.errors import SelfSupError
from conftest import TINY

QUIET = {"progress_bar": False, "knn_every": 0}
CLASSES, PER_CLASS = 10, 30
CLI_TINY = ["--set", 'encoder_kwargs={"widths": [8, 8, 8]}', "--train-set", "knn_every=0", "--no-progress"]


def noisy_images(classes: int = CLASSES, per_class: int = PER_CLASS, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(N, 28, 28) uint8 noise with a class-specific bright column; every image differs from every other."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(classes), per_class)
    images = rng.integers(0, 60, (len(labels), 28, 28), dtype=np.uint8)
    images[np.arange(len(labels)), :, 2 + 2 * labels] = 250
    return images, labels


def write_npz(path: Path, seed: int = 0) -> str:
    images, labels = noisy_images(seed=seed)
    np.savez(path, images=images, labels=labels)
    return str(path)


def write_folder(root: Path) -> Path:
    images, labels = noisy_images()
    for i, (image, label) in enumerate(zip(images, labels)):
        (root / f"class{label}").mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(root / f"class{label}" / f"{i:04d}.png")
    return root


class Spy:
    """Records what the trainer and the evaluation protocols receive (the real trainer still runs)."""

    def __init__(self, monkeypatch):
        self.pools, self.monitors, self.evaluated = [], [], []
        real_fit = selfsup.train.pretrain

        def fit(method, data, cfg, run_dir, monitor=None, **kwargs):
            self.pools.append(data)
            self.monitors.append(monitor)
            return real_fit(method, data, cfg, run_dir, monitor, **kwargs)

        def sweep(method, train, test, *args, **kwargs):
            self.evaluated.append((train, test))
            return []  # which items are used is the point here, not the accuracy (tests/test_train.py runs it)

        monkeypatch.setattr(selfsup.train, "pretrain", fit)
        monkeypatch.setattr(api, "label_sweep", sweep)


@pytest.fixture
def spy(monkeypatch) -> Spy:
    return Spy(monkeypatch)


def keys(images: torch.Tensor) -> list[bytes]:
    return [x.numpy().tobytes() for x in images]


def positions(part: ImageData, source: ImageData) -> set[int]:
    """Indices in `source` of the items of `part`, found by their bytes (all source images differ)."""
    where = {k: i for i, k in enumerate(keys(source.images))}
    assert len(where) == len(source), "the synthetic images must all differ"
    return {where[k] for k in keys(part.images)}


def recorded_test(run: Path) -> tuple[dict, torch.Tensor]:
    record = json.loads((run / "config.json").read_text())["data"]["test"]
    stored = json.loads((run / "test_index.json").read_text())
    assert stored["index"] == sorted(stored["index"]) and stored["index_sha256"] == record["index_sha256"]
    return record, torch.tensor(stored["index"])


def assert_pool_excludes_test(pool: ImageData, source: ImageData, test_index: torch.Tensor) -> None:
    test_set = set(test_index.tolist())
    assert not positions(pool, source) & test_set
    assert not set(keys(pool.images)) & set(keys(source.images[test_index]))


def test_held_out_test_is_stratified_deterministic_and_spares_small_classes():
    images, labels = noisy_images()
    splits = DatasetSplits(ImageData(torch.from_numpy(images[:, None]), torch.from_numpy(labels)), None)
    a, b, c = held_out_test(splits), held_out_test(splits), held_out_test(splits, seed=1)
    assert torch.equal(a.test_index, b.test_index) and not torch.equal(a.test_index, c.test_index)
    assert torch.bincount(a.test.labels).tolist() == [6] * CLASSES  # 20% of the smallest class (30), not 100
    assert len(a.rest) + len(a.test) == len(splits.train)
    assert not set(keys(a.rest.images)) & set(keys(a.test.images))
    small = torch.tensor([0] * 30 + [1] * 10 + [2] * 3)
    held = held_out_test(DatasetSplits(ImageData(torch.zeros(43, 1, 4, 4, dtype=torch.uint8), small), None))
    assert torch.bincount(held.test.labels).tolist() == [1, 1, 1]  # never all of a class
    with pytest.raises(SelfSupError, match="single labeled example"):
        held_out_test(DatasetSplits(ImageData(torch.zeros(3, 1, 4, 4, dtype=torch.uint8), torch.tensor([0, 0, 1])),
                                    None))
    unlabeled = held_out_test(DatasetSplits(ImageData(torch.zeros(3, 1, 4, 4, dtype=torch.uint8)), None))
    assert unlabeled.test is None and len(unlabeled.rest) == 3


def test_api_npz_pool_never_holds_test_images_and_evaluate_and_resume_use_the_record(tmp_path, spy):
    data = write_npz(tmp_path / "d.npz")
    source = load_dataset(data).train
    run = tmp_path / "run"
    api.pretrain("rotation", data=data, epochs=1, batch_size=32, pool_size=200, run_dir=run, options=TINY, train=QUIET)
    record, test_index = recorded_test(run)
    assert record["seed"] == 12345 and record["size"] == len(test_index) == 60 and "stratified" in record["rule"]
    pool = spy.pools[0]
    assert len(pool) == 200
    assert_pool_excludes_test(pool, source, test_index)
    bank, queries = spy.monitors[0].bank, spy.monitors[0].queries  # the kNN monitor never sees test images
    for part in (bank, queries):
        assert not positions(part, source) & set(test_index.tolist())
    assert not positions(bank, source) & positions(queries, source)

    api.evaluate(run, data=data, protocols=["knn"], labels_per_class=[2])
    labeled_from, test = spy.evaluated[0]
    assert torch.equal(test.images, source.images[test_index])  # exactly the recorded set
    assert not positions(labeled_from, source) & set(test_index.tolist())
    api.evaluate(api.load_run(run), data=data, protocols=["knn"], labels_per_class=[2])
    assert torch.equal(spy.evaluated[1][1].images, test.images)  # a bare Method: the same default carving

    api.resume(run, epochs=2)
    assert torch.equal(spy.pools[1].images, pool.images)  # resume rebuilds the same pool
    assert json.loads((run / "config.json").read_text())["data"]["test"] == record

    changed = np.load(data)
    images = changed["images"].copy()
    images[int(test_index[0])] ^= 1
    np.savez(data, images=images, labels=changed["labels"])
    with pytest.raises(SelfSupError, match="has changed since"):
        api.evaluate(run, data=data, protocols=["knn"], labels_per_class=[2])
    with pytest.raises(SelfSupError, match="has changed since"):
        api.resume(run, epochs=3)


def test_transfer_carves_with_the_runs_test_seed(tmp_path, spy):
    data, other = write_npz(tmp_path / "a.npz"), write_npz(tmp_path / "b.npz", seed=1)
    run = tmp_path / "run"
    api.pretrain("rotation", data=data, epochs=1, batch_size=32, run_dir=run, options=TINY, train=QUIET,
                 test_seed=7)
    record, test_index = recorded_test(run)
    assert record["seed"] == 7
    assert len(spy.pools[0]) == CLASSES * PER_CLASS - len(test_index)  # all the rest, and nothing else
    assert_pool_excludes_test(spy.pools[0], load_dataset(data).train, test_index)
    api.evaluate(run, data=other, protocols=["knn"], labels_per_class=[2])
    expected = held_out_test(load_dataset(other), seed=7)
    assert torch.equal(spy.evaluated[0][1].images, expected.test.images)
    assert torch.equal(spy.evaluated[0][0].images, expected.rest.images)


def test_cli_image_folder_records_the_test_set_and_evaluate_uses_it(tmp_path, spy, monkeypatch, capsys):
    write_folder(tmp_path / "imgs")
    monkeypatch.chdir(tmp_path)
    run = tmp_path / "run"
    assert main(["pretrain", "rotation", "--data", "./imgs", "--epochs", "1", "--batch-size", "32",
                 "--run-dir", str(run), "--test-seed", "3", *CLI_TINY]) == 0
    source = load_dataset(str(tmp_path / "imgs")).train
    record, test_index = recorded_test(run)
    assert record["seed"] == 3 and len(test_index) == 60
    assert torch.equal(test_index, held_out_test(load_dataset("imgs"), seed=3).test_index)
    assert len(spy.pools[0]) == len(source) - 60
    assert_pool_excludes_test(spy.pools[0], source, test_index)
    # the same folder named another way (absolute path) is still the run's own data
    assert main(["evaluate", str(run), "--data", str(tmp_path / "imgs"), "--protocol", "knn",
                 "--labels-per-class", "2"]) == 0
    labeled_from, test = spy.evaluated[0]
    assert torch.equal(test.images, source.images[test_index])
    assert not positions(labeled_from, source) & set(test_index.tolist())
    assert main(["pretrain", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 0
    assert torch.equal(spy.pools[1].images, spy.pools[0].images)
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "imgs" / "class0" / "extra.png")
    capsys.readouterr()
    assert main(["evaluate", str(run), "--data", "imgs", "--protocol", "knn", "--labels-per-class", "2"]) == 2
    assert "has changed since" in capsys.readouterr().err


def test_cli_npz_pool_excludes_the_recorded_test_set(tmp_path, spy):
    data = write_npz(tmp_path / "d.npz")
    run = tmp_path / "run"
    assert main(["pretrain", "rotation", "--data", data, "--epochs", "1", "--batch-size", "32",
                 "--run-dir", str(run), *CLI_TINY]) == 0
    source = load_dataset(data).train
    _, test_index = recorded_test(run)
    assert_pool_excludes_test(spy.pools[0], source, test_index)
    assert main(["evaluate", str(run), "--data", data, "--protocol", "knn", "--labels-per-class", "2"]) == 0
    assert torch.equal(spy.evaluated[0][1].images, source.images[test_index])


def test_a_source_with_its_own_test_split_keeps_it_and_nothing_is_carved(tmp_path, spy, monkeypatch):
    images, labels = noisy_images()
    train = ImageData(torch.from_numpy(images[:, None]), torch.from_numpy(labels), name="own-train")
    test_images, test_labels = noisy_images(per_class=5, seed=1)
    test = ImageData(torch.from_numpy(test_images[:, None]), torch.from_numpy(test_labels), name="own-test")
    DATASETS.discover()
    monkeypatch.setitem(DATASETS._items, "toy-with-test", lambda: DatasetSplits(train, test))
    run = tmp_path / "run"
    api.pretrain("rotation", data="toy-with-test", epochs=1, batch_size=32, run_dir=run, options=TINY, train=QUIET)
    record = json.loads((run / "config.json").read_text())["data"]["test"]
    assert record["rule"] == "the source's own test split" and record["size"] == 50
    assert not (run / "test_index.json").exists()
    assert spy.pools[0] is train  # the whole train part: the test split is apart already
    api.evaluate(run, data="toy-with-test", protocols=["knn"], labels_per_class=[2])
    assert spy.evaluated[0][1] is test and spy.evaluated[0][0] is train


@pytest.mark.skipif(not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's Fashion-MNIST is missing")
def test_fashion_mnist_keeps_its_own_10k_test_split(tmp_path, spy):
    run = tmp_path / "run"
    api.pretrain("rotation", data="fashion-mnist", epochs=1, batch_size=64, pool_size=256, run_dir=run,
                 options=TINY, train=QUIET, monitor=False)
    record = json.loads((run / "config.json").read_text())["data"]["test"]
    assert record["rule"] == "the source's own test split" and record["size"] == 10_000
    assert not (run / "test_index.json").exists()
    api.evaluate(run, data="fashion-mnist", protocols=["knn"], labels_per_class=[2])
    labeled_from, test = spy.evaluated[0]
    assert len(test) == 10_000 and test.name == "fashion-mnist-test" and len(labeled_from) == 60_000
