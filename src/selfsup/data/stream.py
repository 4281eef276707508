"""Image folders larger than memory: decoded once into a uint8 cache on disk (Lightning's LitData format),
then streamed from it in batches.

    cache = build_cache("photos/", size=96)            # decodes each image once, reused while the folder is unchanged
    data = StreamedImages(cache)                       # len, spec, labels; no pixels held in memory
    for batch in stream_batches(data, 256, seed=0, epoch=0):   # uint8 (B, C, H, W); augmentation stays on the device
        ...

- **Decoding** is `data.folder.decode`, the same function the in-memory path uses (8 bits, alpha over white,
  shorter side resized, centre crop), so a streamed image equals its in-memory copy pixel for pixel.
- **The cache** is a LitData dataset written by `litdata.optimize` (chunks of uint8 arrays, each with its
  label and file name). Its folder is named after a fingerprint of the image folder (every file's relative
  path, size and modification time) and the reading options, so a second run reuses it and a changed folder
  gets a new cache. It is written in a temporary folder and renamed into place when complete: a crash never
  leaves a half cache that looks whole.
- **Size and colour** are inferred from the headers of at most `SAMPLE_HEADERS` files spread over the folder
  (the in-memory reader reads every header; at hundreds of thousands of files that is a pass of its own),
  by the in-memory reader's rules (`folder.infer_size`; colour when any sampled image is colour).
- **Order.** `stream_batches` reads chunks through `litdata.StreamingDataset`: unshuffled, in the cache's
  order (the folder's sorted file order); shuffled, in LitData's seeded order (chunks shuffled, then items
  within the chunks a worker holds), a function of (seed, epoch) only. It is not the in-memory path's
  `randperm` order: LitData reads chunk by chunk so that memory stays bounded.
- **Processes.** Under `torch.distributed` each rank reads its own chunks (LitData assigns them), and every
  rank yields the same number of batches (the ragged rest is dropped), so DDP steps stay in lockstep.
- Files that cannot be decoded are skipped, counted and named in a warning (the cache records them).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from selfsup.data.base import DataSpec
from selfsup.data.folder import (MAX_PIXELS, checked_folder, no_images, WARN_NAMES, class_groups, decode, image_suffixes, infer_size, is_colour,
                                 open_checked, walk_files)
from selfsup.errors import SelfSupError
from selfsup.utils import publish

CACHE_ROOT = Path(os.environ.get("SELFSUP_STREAM_CACHE", Path.home() / ".cache" / "selfsup" / "stream"))
SAMPLE_HEADERS = 1000  # headers read to infer size and colour
CHUNK_BYTES = "64MB"  # LitData chunk size: what one worker holds in memory at a time
FORMAT = 2  # bump when the cache's layout changes, so old caches are not reused
STREAM_ABOVE_BYTES = 4 << 30  # `stream="auto"` streams a folder whose decoded images would take more than this
META = "selfsup_cache.json"
LABELS = "selfsup_labels.npy"  # the stored items' labels in stream order (-1 unlabeled): no pass over the pixels


def _require_litdata():
    try:
        import litdata
    except ImportError as e:
        raise SelfSupError("streaming needs LitData: pip install 'litdata==0.2.76' (without its torchvision: "
                           "`pip install --no-deps litdata==0.2.76 filelock obstore boto3 requests tifffile`); "
                           "or leave out --stream to read the folder into memory") from e
    return litdata


@dataclass
class FolderPlan:
    """What a folder holds and how it will be read, from a cheap pass (file names and a sample of headers)."""

    root: Path
    items: list[tuple[str, int]]  # (relative path, label or -1), in the folder's sorted order
    classes: list[str]
    size: int
    channels: int
    size_rule: str
    channels_rule: str
    fingerprint: str

    @property
    def decoded_bytes(self) -> int:
        return len(self.items) * self.channels * self.size * self.size


def plan_folder(path: str | Path, size: int | None = None, channels: int | None = None,
                warn: bool = True) -> FolderPlan:
    """List the images of folder `path` (class subfolders give labels, as `data.folder`), infer what is not
    given from a sample of headers, and fingerprint the listing and the options. `warn`: pass on the folder
    reader's notes (loose files, link loops) as warnings."""
    root = checked_folder(path, size, channels)
    notes: list[str] = []
    suffixes = image_suffixes()
    groups, _ = class_groups(root, walk_files(root, notes), notes)
    for note in notes if warn else []:
        warnings.warn(note, stacklevel=2)
    labeled = groups[0][0] is not None
    classes = [name for name, files in groups if name is not None and any(f.suffix.lower() in suffixes for f in files)]
    files = [(f, classes.index(name) if labeled else -1) for name, group in groups
             if name is None or name in classes for f in group if f.suffix.lower() in suffixes]
    if not files:
        raise no_images(root, suffixes)
    step = max(1, len(files) // SAMPLE_HEADERS)
    shapes, colour, problems = [], 0, []
    sample = files[::step][:SAMPLE_HEADERS]
    for f, _ in sample:
        try:
            with open_checked(f, MAX_PIXELS) as im:
                shapes.append(im.size)
                colour += is_colour(im)
        except Exception as e:  # noqa: BLE001 - an unreadable file is skipped (and named) when the cache is built
            problems.append(f"{f.relative_to(root)}: {type(e).__name__}: {e}")
    if not shapes:
        which = "image files" if len(sample) == len(files) else "sampled image files"
        raise SelfSupError(f"none of the {len(sample)} {which} in {root} could be decoded; the first problem: "
                           f"{problems[0]}; replace them with images Pillow opens (PNG, JPEG, ...) or point --data "
                           f"elsewhere")
    size_rule, channels_rule = "given", "given"
    if size is None:
        size, size_rule = infer_size(shapes)
        size_rule += f" (from {len(shapes)} sampled headers)"
    if channels is None:
        channels = 3 if colour else 1
        channels_rule = f"inferred: {colour} of {len(shapes)} sampled images are colour"
    digest = hashlib.sha256(json.dumps([FORMAT, size, channels, classes]).encode())
    items = []
    for f, label in files:
        st = f.stat()
        rel = f.relative_to(root).as_posix()
        digest.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode("utf-8", "surrogateescape"))
        items.append((rel, label))
    return FolderPlan(root, items, classes, size, channels, size_rule, channels_rule, digest.hexdigest()[:16])


class _Decoder:
    """litdata.optimize's function: one file in, one item (or none, for a file that cannot be decoded) out."""

    def __init__(self, root: str, size: int, channels: int):
        self.root, self.size, self.channels = root, size, channels

    def __call__(self, item: tuple[int, str, int]):
        position, rel, label = item
        try:
            image = decode(Path(self.root) / rel, self.size, self.channels)
        except Exception:  # noqa: BLE001 - Pillow raises many types for broken files; counted after the build
            return
        yield {"position": position, "image": np.ascontiguousarray(image), "label": label}


def build_cache(path: str | Path, size: int | None = None, channels: int | None = None,
                cache_root: str | Path | None = None, workers: int | None = None) -> Path:
    """Decode the images of folder `path` once into a LitData cache and return its folder; a cache of the
    same folder (unchanged) and options is reused as it is."""
    litdata = _require_litdata()
    plan = plan_folder(path, size, channels)
    root = Path(cache_root) if cache_root is not None else CACHE_ROOT
    target = root / f"{plan.root.name}-{plan.fingerprint}"
    if (target / META).exists():
        _warn_skipped(json.loads((target / META).read_text()))
        return target
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".{target.name}.{os.getpid()}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    workers = workers or max(1, min(os.cpu_count() or 1, 8, len(plan.items) // 64))
    inputs = [(i, rel, label) for i, (rel, label) in enumerate(plan.items)]
    try:
        litdata.optimize(fn=_Decoder(str(plan.root.resolve()), plan.size, plan.channels), inputs=inputs,
                         output_dir=str(tmp), chunk_bytes=CHUNK_BYTES, num_workers=workers, reorder_files=False,
                         keep_data_ordered=True, verbose=False, start_method="fork")
        stored = len(litdata.StreamingDataset(str(tmp)))
    except Exception as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SelfSupError(f"could not build the stream cache of {plan.root} in {root}: {type(e).__name__}: {e}") from e
    if stored == 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise SelfSupError(f"none of the {len(plan.items)} image files in {plan.root} could be decoded")
    skipped = len(plan.items) - stored
    kept, names = range(len(plan.items)), []
    if skipped:  # the cache keeps the input order (keep_data_ordered), so sorted positions are stream order
        kept = sorted(int(p) for p in _read_column(tmp, "position"))
        stored_positions = set(kept)
        names = [rel for i, (rel, _) in enumerate(plan.items) if i not in stored_positions]
    np.save(tmp / LABELS, np.array([plan.items[i][1] for i in kept], dtype=np.int64))
    meta = {"format": FORMAT, "folder": str(plan.root.resolve()), "fingerprint": plan.fingerprint,
            "size": plan.size, "channels": plan.channels, "size_rule": plan.size_rule,
            "channels_rule": plan.channels_rule, "classes": plan.classes, "images": stored, "skipped": names,
            "labeled": bool(plan.classes)}
    (tmp / META).write_text(json.dumps(meta, indent=1) + "\n")  # last: its presence marks a complete cache
    _warn_skipped(meta)
    if target.exists():  # another process finished the same cache meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
        return target
    publish(tmp, target)
    return target


def _warn_skipped(meta: dict) -> None:
    names = meta["skipped"]
    if names:
        shown = "; ".join(names[:WARN_NAMES]) + (f"; and {len(names) - WARN_NAMES} more" if len(names) > WARN_NAMES else "")
        warnings.warn(f"skipped {len(names)} unreadable image(s) in {meta['folder']}: {shown}", stacklevel=3)


def _read_column(cache: Path, key: str) -> list:
    import litdata
    ds = litdata.StreamingDataset(str(cache))
    return [ds[i][key] for i in range(len(ds))]


class StreamedImages:
    """A stream cache seen as data: `len`, `spec`, `labels` (read once, a few bytes an image) and `names`;
    pixels are only ever read in batches (`stream_batches`) or a few at a time (`batch`)."""

    def __init__(self, cache: str | Path, name: str | None = None):
        litdata = _require_litdata()
        self.cache = Path(cache)
        if not (self.cache / META).exists():
            raise SelfSupError(f"{self.cache} is not a complete selfsup stream cache (no {META}); build it with "
                               f"selfsup.data.stream.build_cache")
        self.meta = json.loads((self.cache / META).read_text())
        self.name = name or Path(self.meta["folder"]).name
        self.classes: list[str] = list(self.meta["classes"])
        self._dataset = litdata.StreamingDataset(str(self.cache))
        self._labels: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.meta["images"]

    @property
    def spec(self) -> DataSpec:
        s = self.meta["size"]
        return DataSpec("image", channels=self.meta["channels"], height=s, width=s, num_classes=len(self.classes),
                        size=len(self))

    @property
    def labels(self) -> torch.Tensor | None:
        if not self.meta["labeled"]:
            return None
        if self._labels is None:
            self._labels = torch.from_numpy(np.load(self.cache / LABELS))
        return self._labels

    def batch(self, index: torch.Tensor) -> torch.Tensor:
        """uint8 images at `index` by random access (a few at a time: examples, tests)."""
        return torch.stack([torch.as_tensor(self._dataset[int(i)]["image"]) for i in index.view(-1).tolist()])

    def subset(self, index: torch.Tensor, name: str | None = None):
        raise SelfSupError("a streamed folder is read in whole epochs, not subsets; leave out --stream (and "
                           "--pool-size) to read a part of it into memory")

    def describe(self) -> str:
        m = self.meta
        return (f"streaming {m['images']} images of {m['folder']} from the cache {self.cache}: {m['size']}x{m['size']} "
                f"({m['size_rule']}), {m['channels']} channel(s) ({m['channels_rule']})"
                + (f"; skipped {len(m['skipped'])} unreadable file(s)" if m["skipped"] else ""))


def _stack_images(items: list[dict]) -> torch.Tensor:
    return torch.from_numpy(np.stack([item["image"] for item in items]))


def world() -> tuple[int, int]:
    """(rank, world size) of this process under torch.distributed, else (0, 1)."""
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def batches_per_epoch(data: StreamedImages, batch_size: int, world_size: int = 1) -> int:
    return (len(data) // world_size) // batch_size


def stream_batches(data: StreamedImages, batch_size: int, seed: int, epoch: int, shuffle: bool = True,
                   workers: int = 0, skip: int = 0) -> Iterator[torch.Tensor]:
    """This process's uint8 batches (B, C, H, W) of one epoch: its own shard under torch.distributed, the
    same number of batches on every rank, in LitData's (seed, epoch) order (see the module docstring).
    `skip` batches are read and dropped first (a resume in the middle of an epoch)."""
    import litdata
    _, world_size = world()
    dataset = litdata.StreamingDataset(str(data.cache), shuffle=shuffle, seed=seed, drop_last=True)
    loader = litdata.StreamingDataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                         collate_fn=_stack_images, drop_last=True)
    loader.current_epoch = epoch  # the loader adds 1 as it starts (LitData counts epochs from 1) and sets the dataset's
    steps = batches_per_epoch(data, batch_size, world_size)
    for i, batch in enumerate(loader):
        if i >= steps:
            break
        if i >= skip:
            yield batch
