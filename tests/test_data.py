import gzip
import struct
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from selfsup.data import fashion_mnist, image_folder, load_dataset, make_splits, npz, read_idx, stratified_take
from selfsup.errors import SelfSupError
from conftest import synthetic_images


def write_idx(path, array: np.ndarray, compress: bool) -> None:
    code = {np.uint8: 0x08, np.int32: 0x0C}[array.dtype.type]
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    (gzip.open if compress else open)(path, "wb").write(payload)


@pytest.mark.parametrize("compress", [True, False])
def test_idx_reader_roundtrip(tmp_path, compress):
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    path = tmp_path / ("x.idx.gz" if compress else "x.idx")
    write_idx(path, images, compress)
    assert np.array_equal(read_idx(path), images)
    ints = np.array([1, -2, 70000], dtype=np.int32)
    write_idx(tmp_path / "y.idx", ints, False)
    assert read_idx(tmp_path / "y.idx").tolist() == [1, -2, 70000]


def test_idx_reader_rejects_truncated_and_bad_magic(tmp_path):
    images = np.zeros((5, 4, 3), dtype=np.uint8)
    write_idx(tmp_path / "x.idx", images, False)
    data = (tmp_path / "x.idx").read_bytes()
    (tmp_path / "short.idx").write_bytes(data[:-7])
    with pytest.raises(SelfSupError, match="truncated"):
        read_idx(tmp_path / "short.idx")
    (tmp_path / "bad.idx").write_bytes(b"\x01\x02" + data[2:])
    with pytest.raises(SelfSupError, match="magic"):
        read_idx(tmp_path / "bad.idx")


def test_fashion_mnist_from_a_folder_and_missing_message(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 6), ("t10k", 4)):
        write_idx(tmp_path / f"{split}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), True)
        write_idx(tmp_path / f"{split}-labels-idx1-ubyte.gz", rng.integers(0, 10, n, dtype=np.uint8), True)
    d = fashion_mnist(tmp_path)
    assert d.train.images.shape == (6, 1, 28, 28) and d.test.images.shape == (4, 1, 28, 28)
    assert d.train.labels.dtype == torch.int64
    with pytest.raises(SelfSupError, match="apt-get install dataset-fashion-mnist"):
        fashion_mnist(tmp_path / "nowhere")


def test_stratified_splits_are_disjoint_balanced_and_reproducible():
    data = synthetic_images(n=400, classes=4)
    test = synthetic_images(n=80, classes=4, seed=1)
    a = make_splits(data, test, labels_per_class=10, pool_size=200, seed=3)
    b = make_splits(data, test, labels_per_class=10, pool_size=200, seed=3)
    c = make_splits(data, test, labels_per_class=10, pool_size=200, seed=4)
    assert torch.equal(a.labeled.images, b.labeled.images) and torch.equal(a.pool.images, b.pool.images)
    assert not torch.equal(a.labeled.images, c.labeled.images)
    assert torch.bincount(a.labeled.labels).tolist() == [10, 10, 10, 10]
    assert len(a.pool) == 200 and a.test is test
    # disjointness by index: draw again with indices
    g = torch.Generator().manual_seed(0)
    idx = stratified_take(data.labels, per_class=5, generator=g)
    assert len(set(idx.tolist())) == 20


def _with_ids(n: int, classes: int):
    """Images whose first two pixels encode their index, so splits can be checked for exact disjointness."""
    data = synthetic_images(n=n, classes=classes)
    data.images[:, 0, 0, 0] = (torch.arange(n) // 256).to(torch.uint8)
    data.images[:, 0, 0, 1] = (torch.arange(n) % 256).to(torch.uint8)
    return data


def _ids(part) -> set[int]:
    return set((part.images[:, 0, 0, 0].long() * 256 + part.images[:, 0, 0, 1].long()).tolist())


def test_splits_without_test_carve_a_disjoint_stratified_test():
    data = _with_ids(400, 4)
    s = make_splits(data, None, labels_per_class=20, test_per_class=30, seed=0)
    assert torch.bincount(s.test.labels).tolist() == [30] * 4
    assert torch.bincount(s.labeled.labels).tolist() == [20] * 4
    pool, labeled, test = _ids(s.pool), _ids(s.labeled), _ids(s.test)
    assert not (pool & labeled) and not (pool & test) and not (labeled & test)
    assert pool | labeled | test == set(range(400))


def test_budget_larger_than_data_is_a_clear_error():
    data = synthetic_images(n=40, classes=4)
    with pytest.raises(SelfSupError, match="larger than the 10 examples"):
        make_splits(data, data, labels_per_class=11)
    with pytest.raises(SelfSupError, match="pool"):
        make_splits(data, data, labels_per_class=5, pool_size=1000)


def test_image_folder_with_classes_corrupt_file_and_odd_modes(tmp_path):
    (tmp_path / "cats").mkdir()
    (tmp_path / "dogs").mkdir()
    Image.fromarray(np.full((28, 28), 200, np.uint8), "L").save(tmp_path / "cats" / "a.png")
    Image.fromarray(np.zeros((50, 40, 4), np.uint8), "RGBA").save(tmp_path / "cats" / "b.png")  # wrong mode+size
    Image.new("P", (10, 10)).save(tmp_path / "dogs" / "c.gif")  # palette mode
    (tmp_path / "dogs" / "broken.jpg").write_bytes(b"not a jpeg at all")
    with pytest.warns(UserWarning, match="skipped 1 unreadable image.*broken.jpg"):
        data = image_folder(tmp_path, size=28, channels=1)
    assert data.images.shape == (3, 1, 28, 28) and data.images.dtype == torch.uint8
    assert data.classes == ["cats", "dogs"] and data.labels.tolist() == [0, 0, 1]
    assert data.images[0].float().mean().item() == 200
    with pytest.raises(SelfSupError, match="cannot decode"):
        image_folder(tmp_path, strict=True)
    rgb = image_folder(tmp_path, size=16, channels=3)
    assert rgb.images.shape == (3, 3, 16, 16)


def test_image_folder_flat_is_unlabeled_and_empty_is_an_error(tmp_path):
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "x.png")
    assert image_folder(tmp_path, size=8).labels is None
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SelfSupError, match="no images"):
        image_folder(empty)
    with pytest.raises(SelfSupError, match="does not exist"):
        image_folder(tmp_path / "missing")
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "a.png").write_bytes(b"garbage")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(SelfSupError, match="none of the 1 image files"):
            image_folder(junk)


def test_npz_layouts_and_bad_input(tmp_path):
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 3), dtype=np.uint8)
    np.savez(tmp_path / "hwc.npz", images=x, labels=np.arange(6) % 2)
    d = npz(tmp_path / "hwc.npz")
    assert d.images.shape == (6, 3, 28, 28) and torch.equal(d.images[1, 2], torch.from_numpy(x[1, :, :, 2]))
    np.savez(tmp_path / "float.npz", x=np.full((2, 8, 8), 0.5, np.float32))
    assert npz(tmp_path / "float.npz").images.unique().tolist() == [128]
    np.savez(tmp_path / "bad.npz", images=np.zeros((2, 5), np.uint8))
    with pytest.raises(SelfSupError, match="'images' must be"):
        npz(tmp_path / "bad.npz")
    np.savez(tmp_path / "range.npz", images=np.full((2, 8, 8), 3.0))
    with pytest.raises(SelfSupError, match="floats in"):
        npz(tmp_path / "range.npz")
    np.savez(tmp_path / "nolabels.npz", images=x, labels=np.arange(5))
    with pytest.raises(SelfSupError, match="'labels' must be 6"):
        npz(tmp_path / "nolabels.npz")
    (tmp_path / "corrupt.npz").write_bytes(b"nope")
    with pytest.raises(SelfSupError, match="cannot read"):
        npz(tmp_path / "corrupt.npz")


def test_load_dataset_names_and_paths(tmp_path):
    with pytest.raises(SelfSupError, match="Did you mean 'fashion-mnist'"):
        load_dataset("fashion_mnist")
    with pytest.raises(SelfSupError, match="does not exist"):
        load_dataset(str(tmp_path / "missing.npz"))
    np.savez(tmp_path / "d.npz", images=np.zeros((3, 8, 8), np.uint8))
    assert load_dataset(str(tmp_path / "d.npz")).test is None


def test_mnist5k_is_500_per_class():
    d = load_dataset("mnist5k")
    assert d.train.images.shape == (5000, 1, 28, 28) and d.train.images.dtype == torch.uint8
    assert torch.bincount(d.train.labels).tolist() == [500] * 10
