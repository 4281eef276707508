"""Colour photographs for colorization and split-brain pretraining: random 32x32 patches of 30 photos.

The photos are the natural photographs (landscapes, flowers, insects, animals, still lifes) among the
wallpapers of three Debian packages: `lomiri-wallpapers-16.04` (15 photos), `lomiri-wallpapers-20.04`
(3 photos; its abstract `Fossa` is left out) and `mate-backgrounds` (its 12 `nature` photos; the
`abstract` and `desktop` art is left out). Each photo is cropped to 16:9 and scaled to 228x128, then patches
are cut at seeded random positions, half of them mirrored. Labels are the source photo's index, useful
only to check that patches of one photo cluster; there is no test split (pretraining only).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from selfsup.data.base import DatasetSplits, ImageData
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError
from selfsup.utils import atomic_save_npy, cache_write

BACKGROUNDS = Path("/usr/share/backgrounds")
PHOTO_FILES = {
    "lomiri-wallpapers-16.04": [
        "Bridge_by_Sander_Klootwijk.jpg", "Dragonfly_by_Bolly.jpg", "Picture_0B_by_freespace.jpg",
        "Picture_1A_by_freespace.jpg", "Wine_by_Jakkub_Mede.jpg", "aitzgorri_by_Aitzol_Berasategi.jpg",
        "analogpattern_by_Peter_Nerlich.jpg", "free_by_Peter_Nerlich.jpg", "friends_by_Aitzol_Berasategi.jpg",
        "greentock_by_Peter_Nerlich.jpg", "life_by_Aitzol_Berasategi.jpg",
        "picosdeeuropa_by_Aitzol_Berasategi.jpg", "seeding_by_Clements_Engelhardt.jpg",
        "sunset_by_Aitzol_Berasategi.jpg", "umang_by_Abhishek_Mudgal.jpg"],
    "lomiri-wallpapers-20.04": [
        "Infinite-Sea_by_Aury88.jpg", "Kleiber_by_Lukas_Baubkus.jpg", "Painting-Colors_by__herobrine7gamer.jpg"],
    "mate-backgrounds": [f"mate/nature/{name}.jpg" for name in (
        "Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
        "TwoWings", "Wood", "YellowFlower")],
}
INSTALL_COMMAND = f"sudo apt-get install {' '.join(PHOTO_FILES)}"
CACHE_DIR = Path.home() / ".cache/selfsup/photos"
PHOTO_SIZE = (128, 228)  # (height, width): 16:9, so a 32x32 patch sees about a quarter of the photo's height


def photo_paths(root: str | Path = BACKGROUNDS) -> list[Path]:
    """The known photographs present under `root`; SelfSupError with the install command when none is."""
    root = Path(root)
    found = [root / name for names in PHOTO_FILES.values() for name in names if (root / name).is_file()]
    if not found:
        raise SelfSupError(f"no colour photographs found in {root}. Install them with `{INSTALL_COMMAND}` "
                           f"(Debian/Ubuntu), or pretrain on your own folder of colour images instead.")
    return found


def load_photo(path: Path, size: tuple[int, int] = PHOTO_SIZE) -> np.ndarray:
    """One photo as uint8 (3, H, W): centre-cropped to the aspect of `size`, then scaled to it."""
    from PIL import Image, ImageOps
    height, width = size
    with Image.open(path) as im:
        im.draft("RGB", (width, height))  # JPEG decodes at the smallest scale >= size: much faster for big photos
        im = ImageOps.fit(im.convert("RGB"), (width, height), Image.LANCZOS)
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def load_photos(paths: list[Path], size: tuple[int, int] = PHOTO_SIZE, cache_dir: Path | None = CACHE_DIR) -> Tensor:
    """All photos as one uint8 tensor (P, 3, H, W), decoded once and then read back from a small cache
    (2.6 MB) keyed by the files' names, sizes and times: decoding the large JPEGs takes seconds."""
    key = hashlib.sha1(repr([(str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths] + [size]).encode())
    cached = None if cache_dir is None else Path(cache_dir) / f"{key.hexdigest()[:16]}.npy"
    if cached is not None and cached.is_file():
        try:
            return torch.from_numpy(np.load(cached))
        except (OSError, ValueError, EOFError):
            pass  # a damaged cache file is decoded again below
    stack = np.stack([load_photo(p, size) for p in paths])
    if cached is not None:  # a cache we cannot write (read-only home) only costs time
        cache_write(lambda: atomic_save_npy(cached, stack))
    return torch.from_numpy(stack)


def cut_patches(photos: Tensor, count: int, size: int = 32, seed: int = 0) -> tuple[Tensor, Tensor]:
    """`count` random size x size patches of `photos` (P, C, H, W), half mirrored left-right, all at once.

    Returns the patches (count, C, size, size) and the index of each patch's photo. The same seed gives
    the same patches.
    """
    p, c, h, w = photos.shape
    if size > h or size > w:
        raise SelfSupError(f"patch size {size} is larger than the photos ({h}x{w})")
    g = torch.Generator().manual_seed(seed)
    source = torch.randint(p, (count,), generator=g)
    top = torch.randint(h - size + 1, (count,), generator=g)
    left = torch.randint(w - size + 1, (count,), generator=g)
    mirrored = torch.rand(count, generator=g) < 0.5
    windows = photos.unfold(2, size, 1).unfold(3, size, 1)  # (P, C, H', W', size, size), a view: no copy
    patches = windows[source, :, top, left]  # (count, C, size, size): one gather of just the patches
    patches = torch.where(mirrored[:, None, None, None], patches.flip(-1), patches)
    return patches, source


@DATASETS.register("photos")
def photos(root: str | Path = BACKGROUNDS, patches: int = 20000, size: int = 32, seed: int = 0,
           cache_dir: str | Path | None = CACHE_DIR) -> DatasetSplits:
    """`patches` uint8 (3, size, size) patches of the colour photographs under `root` (see module doc).
    20,000 patches by default: enough for the few-minute CPU budgets of colorization and split-brain."""
    paths = photo_paths(root)
    stack = load_photos(paths, cache_dir=cache_dir)
    images, source = cut_patches(stack, patches, size, seed)
    classes = [p.stem for p in paths]
    return DatasetSplits(ImageData(images.contiguous(), source, classes, name="photos"), None)
