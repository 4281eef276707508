"""Streaming a folder from a LitData cache on disk (selfsup.data.stream): the same pixels and batches as the
in-memory path, a seeded order, disjoint shards per process, a cache reused until the folder changes."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("litdata")

import selfsup  # noqa: E402
from selfsup.data import stream  # noqa: E402
from selfsup.data.folder import read_image_folder  # noqa: E402
from selfsup.errors import SelfSupError  # noqa: E402
from conftest import results_per_process  # noqa: E402

N, BATCH = 96, 16


@pytest.fixture
def folder(tmp_path):
    """96 colour images of two sizes in two class folders, and one file that is not an image."""
    root = tmp_path / "imgs"
    rng = np.random.default_rng(0)
    for i in range(N):
        d = root / ("cats" if i % 3 else "dogs")
        d.mkdir(parents=True, exist_ok=True)
        shape = (20, 24, 3) if i % 2 else (18, 18, 3)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)).save(d / f"{i:03d}.png")
    (root / "cats" / "broken.png").write_bytes(b"not a png")
    return root


@pytest.fixture
def cache(folder, tmp_path):
    with pytest.warns(UserWarning, match="broken.png"):
        return stream.build_cache(folder, size=16, cache_root=tmp_path / "cache", workers=1)


def test_unshuffled_stream_gives_the_in_memory_batches(folder, cache):
    data = stream.StreamedImages(cache)
    with pytest.warns(UserWarning, match="broken.png"):
        memory, _ = read_image_folder(folder, size=16)
    assert len(data) == len(memory) == N
    assert data.spec == memory.spec
    assert torch.equal(data.labels, memory.labels) and data.classes == memory.classes
    batches = list(stream.stream_batches(data, BATCH, seed=0, epoch=0, shuffle=False))
    assert len(batches) == N // BATCH
    for i, b in enumerate(batches):
        assert b.dtype == torch.uint8
        assert torch.equal(b, memory.batch(torch.arange(i * BATCH, (i + 1) * BATCH)))
    assert torch.equal(data.batch(torch.tensor([5, 77])), memory.images[[5, 77]])


def test_labels_come_from_the_side_file_without_a_pass_over_the_pixels(cache, monkeypatch):
    stored = torch.tensor([int(x) for x in stream._read_column(cache, "label")])  # each stored item's own label
    assert (stored == 0).any() and (stored == 1).any()  # both classes, and one file was skipped before them

    def no_pixel_pass(*_):
        raise AssertionError("labels read item by item")
    monkeypatch.setattr(stream, "_read_column", no_pixel_pass)
    assert torch.equal(stream.StreamedImages(cache).labels, stored)


def test_shuffled_order_is_a_function_of_seed_and_epoch(cache):
    data = stream.StreamedImages(cache)
    memory = torch.cat(list(stream.stream_batches(data, BATCH, 0, 0, shuffle=False)))
    key = {bytes(img.flatten().tolist()): i for i, img in enumerate(memory)}

    def order(seed, epoch):
        return [key[bytes(img.flatten().tolist())]
                for b in stream.stream_batches(data, BATCH, seed, epoch) for img in b]

    first = order(0, 0)
    assert sorted(first) == list(range(N))  # a permutation: every image once
    assert first == order(0, 0)  # repeatable
    assert first != list(range(N))
    assert first != order(0, 1) and first != order(1, 0)


def test_cache_is_reused_and_rebuilt_when_the_folder_changes(folder, cache, tmp_path):
    stamp = (cache / "selfsup_cache.json").stat().st_mtime_ns
    with pytest.warns(UserWarning, match="broken.png"):
        again = stream.build_cache(folder, size=16, cache_root=tmp_path / "cache", workers=1)
    assert again == cache and (cache / "selfsup_cache.json").stat().st_mtime_ns == stamp
    with pytest.warns(UserWarning, match="broken.png"):  # other options: another cache
        assert stream.build_cache(folder, size=12, cache_root=tmp_path / "cache", workers=1) != cache
    (folder / "cats" / "broken.png").unlink()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "dogs" / "new.png")
    rebuilt = stream.build_cache(folder, size=16, cache_root=tmp_path / "cache", workers=1)
    assert rebuilt != cache and len(stream.StreamedImages(rebuilt)) == N + 1
    assert not [p for p in (tmp_path / "cache").iterdir() if p.name.endswith(".tmp")]


def _shard_of_rank(_):
    data = stream.StreamedImages(os.environ["SELFSUP_TEST_STREAM_CACHE"])
    batches = list(stream.stream_batches(data, 8, seed=0, epoch=0))
    return {"n": torch.tensor(len(batches)), "images": torch.cat(batches)}


def test_two_processes_read_disjoint_shards(cache, tmp_path, monkeypatch):
    monkeypatch.setenv("SELFSUP_TEST_STREAM_CACHE", str(cache))
    ranks = results_per_process(_shard_of_rank, tmp_path, global_batch=2)
    assert ranks[0]["n"] == ranks[1]["n"] == N // 2 // 8  # the same number of steps on every rank
    whole = torch.cat(list(stream.stream_batches(stream.StreamedImages(cache), 8, 0, 0, shuffle=False)))
    key = {bytes(img.flatten().tolist()): i for i, img in enumerate(whole)}
    seen = [[key[bytes(img.flatten().tolist())] for img in r["images"]] for r in ranks]
    assert not set(seen[0]) & set(seen[1])
    assert sorted(seen[0] + seen[1]) == list(range(N))


def test_pretrain_streams_when_asked_and_says_so(folder, tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "CACHE_ROOT", tmp_path / "cache")
    with pytest.warns(UserWarning, match="broken.png"):
        result = selfsup.pretrain("rotation", data=str(folder), epochs=1, batch_size=BATCH, image_size=16,
                                  run_dir=tmp_path / "run", stream=True, train={"progress_bar": False})
    data = json.loads((result.run_dir / "config.json").read_text())["data"]
    assert data["read"]["summary"].startswith(f"streaming {N} images of {folder}")
    assert data["stream"]["cache"].startswith(str(tmp_path / "cache"))
    assert "broken.png" in (result.run_dir / "skipped_files.txt").read_text()
    assert result.final["train/images_per_s"] > 0
    with pytest.warns(UserWarning, match="broken.png"):  # the cache is found again, not rebuilt
        resumed = selfsup.resume(result.run_dir, epochs=2)
    assert resumed.epochs == 2
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["status"] == "done" and record["data"]["stream"] == data["stream"]


def test_auto_streams_only_above_the_threshold(folder, monkeypatch):
    assert not selfsup.api.choose_stream(str(folder), "auto", 16, None)  # 96 x 3 x 16 x 16 bytes fit
    monkeypatch.setattr(stream, "STREAM_ABOVE_BYTES", 1000)
    with pytest.warns(UserWarning, match="streaming them from a cache on disk"):
        assert selfsup.api.choose_stream(str(folder), "auto", 16, None)
    with pytest.raises(SelfSupError, match="not a folder"):
        selfsup.api.choose_stream("fashion-mnist", True, None, None)
    with pytest.raises(SelfSupError, match="pool-size"):
        selfsup.pretrain("rotation", data=str(folder), pool_size=10, stream=True)


def test_not_a_cache_is_a_clear_error(tmp_path):
    with pytest.raises(SelfSupError, match="not a complete selfsup stream cache"):
        stream.StreamedImages(tmp_path)
