"""The 'photos' dataset: seeded, vectorised patches of colour photographs (selfsup.data.photos)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from selfsup.data.photos import INSTALL_COMMAND, PHOTO_FILES, cut_patches, load_photos, photo_paths, photos
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError


def coordinate_photos(count: int, height: int = 40, width: int = 60) -> torch.Tensor:
    """Photos whose pixels name themselves: channel 0 = row, channel 1 = column, channel 2 = photo index."""
    rows = torch.arange(height).view(1, height, 1).expand(count, height, width)
    cols = torch.arange(width).view(1, 1, width).expand(count, height, width)
    index = torch.arange(count).view(count, 1, 1).expand(count, height, width)
    return torch.stack([rows, cols, index], dim=1).to(torch.uint8)


def test_patches_are_true_windows_of_their_source_photo_some_mirrored():
    patches, source = cut_patches(coordinate_photos(5), 2000, size=8, seed=3)
    assert patches.shape == (2000, 3, 8, 8) and patches.dtype == torch.uint8
    assert torch.equal(patches[:, 2], source.view(-1, 1, 1).expand(-1, 8, 8).to(torch.uint8))
    rows, cols = patches[:, 0].long(), patches[:, 1].long()
    assert torch.equal(rows, rows[:, :, :1].expand(-1, -1, 8))  # a row index is constant along the row
    assert torch.equal(rows[:, 1:, 0] - rows[:, :-1, 0], torch.ones(2000, 7, dtype=torch.long))
    steps = cols[:, :, 1:] - cols[:, :, :-1]
    forward = (steps == 1).all(dim=(1, 2))
    mirrored = (steps == -1).all(dim=(1, 2))
    assert bool((forward ^ mirrored).all())  # every patch is a straight or a left-right mirrored window
    assert 0.4 < mirrored.float().mean().item() < 0.6
    assert rows.max() <= 39 and cols.max() <= 59
    assert rows[:, 0, 0].min() == 0 and rows[:, -1, 0].max() == 39  # windows reach both edges
    assert set(source.tolist()) == set(range(5))


def test_patches_are_reproducible_from_the_seed():
    photos_ = coordinate_photos(3)
    a, sa = cut_patches(photos_, 50, size=8, seed=0)
    b, sb = cut_patches(photos_, 50, size=8, seed=0)
    c, _ = cut_patches(photos_, 50, size=8, seed=1)
    assert torch.equal(a, b) and torch.equal(sa, sb) and not torch.equal(a, c)


def test_patch_larger_than_the_photos_is_a_user_error():
    with pytest.raises(SelfSupError, match="larger than the photos"):
        cut_patches(coordinate_photos(1, 10, 10), 4, size=12)


def test_missing_package_says_how_to_install(tmp_path):
    with pytest.raises(SelfSupError, match="apt-get install lomiri-wallpapers-16.04") as e:
        photos(root=tmp_path)
    assert INSTALL_COMMAND in str(e.value)


def write_fake_photos(root: Path, count: int) -> list[str]:
    from PIL import Image
    names = PHOTO_FILES["mate-backgrounds"][:count]
    rng = np.random.default_rng(0)
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (90, 160, 3), dtype=np.uint8)).save(root / name)
    return names


def test_photos_from_a_folder_give_labelled_colour_patches_and_no_test_split(tmp_path):
    names = write_fake_photos(tmp_path, 2)
    splits = photos(root=tmp_path, patches=100, size=32, seed=0, cache_dir=None)
    assert splits.test is None
    train = splits.train
    assert train.images.shape == (100, 3, 32, 32) and train.images.dtype == torch.uint8
    assert set(train.labels.tolist()) <= {0, 1}
    assert train.classes == [Path(n).stem for n in names]
    assert train.spec.channels == 3 and train.spec.height == 32


def test_decoded_photos_are_cached_and_read_back_equal(tmp_path):
    write_fake_photos(tmp_path / "photos", 2)
    paths = photo_paths(tmp_path / "photos")
    first = load_photos(paths, size=(32, 56), cache_dir=tmp_path / "cache")
    assert first.shape == (2, 3, 32, 56)
    assert len(list((tmp_path / "cache").glob("*.npy"))) == 1
    assert torch.equal(load_photos(paths, size=(32, 56), cache_dir=tmp_path / "cache"), first)


def test_the_registered_photos_are_real_colour_photographs():
    try:
        paths = photo_paths()
    except SelfSupError:
        pytest.skip(f"photo packages not installed ({INSTALL_COMMAND})")
    splits = DATASETS.get("photos")()
    images = splits.train.images
    assert images.shape == (20000, 3, 32, 32)
    assert len(splits.train.classes) == len(paths)
    channel_spread = images[:500].float().std(dim=1).mean()  # colour images: the channels differ from each other
    assert channel_spread > 5.0
