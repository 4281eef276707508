"""A folder of the user's images, decoded once into uint8 tensors (N, C, H, W), with nothing dropped silently.

Layout: one subfolder per class gives labels (sorted subfolder names are the classes); a folder without
subfolders gives unlabeled images. Any format Pillow reads is accepted, by file suffix.

What is chosen, and the rules that choose it (`Reading.summary` says it in one line):
- **Colour**: 3 channels when any image is stored in a colour mode (RGB, RGBA, CMYK, YCbCr, a palette with a
  colour in it...), else 1; `channels=` overrides (colour images are then read as their luminance).
- **Size**: square, `size` pixels a side. Inferred: the images' own size when they all share one square size
  up to `MAX_INFERRED_SIZE`, else the median shorter side, capped at `MAX_INFERRED_SIZE` (the default
  encoders are sized for 28x28 on 2 CPU cores) and rounded down to a multiple of 4 (the ViT's patch).
  Each image is resized so that its shorter side is `size`, then centre-cropped to a square.
- **Conversions**, each deliberate: EXIF orientation is applied; CMYK and YCbCr become RGB; 16-bit and
  32-bit integer images are scaled to 8 bits (65535 -> 255, never clipped); float images are read as
  [0, 1]; **alpha is composited over white** (transparent pixels become the white of a page, whatever
  colour they store), for LA, RGBA and palettes with transparency alike.
- **Safety**: an image of more than `MAX_PIXELS` pixels (a decompression bomb) is refused from its header,
  before anything is decoded; symbolic links are followed, each folder at most once, and a link back into
  a folder already visited (a loop) is reported and not followed again.
- **Problems**: files that cannot be read are skipped, counted, named in a warning (the first few) and
  listed in `Reading.skipped` (a run folder stores them in `skipped_files.txt`). An empty folder is
  an error; a class folder without a readable image, and images lying at the top level beside class
  folders, get a warning that says what happened and what to do.
"""
from __future__ import annotations

import os
import statistics
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from selfsup.data.base import ImageData
from selfsup.errors import SelfSupError

MAX_INFERRED_SIZE = 64
MIN_INFERRED_SIZE = 8
MAX_PIXELS = 89_478_485  # Pillow's own MAX_IMAGE_PIXELS: about a 9,500 x 9,500 image
WARN_NAMES = 5  # how many skipped files a warning names
COLOUR_MODES = {"RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV"}
ALPHA_BACKGROUND = 255  # alpha is composited over white


@dataclass
class Reading:
    """How the user's files were read: what was chosen (and by which rule), what was skipped and why.

    Made for image folders here and for .npz files by `data.sources.npz`; a run folder records it.
    """

    root: str
    size: tuple[int, int]  # (height, width) of the images as read
    channels: int
    size_rule: str
    channels_rule: str
    images: int = 0
    skipped: list[str] = field(default_factory=list)  # "path: reason", one per unreadable file
    notes: list[str] = field(default_factory=list)  # the warnings given (empty classes, loose images, loops)

    @property
    def summary(self) -> str:
        h, w = self.size
        line = (f"read {self.images} images from {self.root}: {h}x{w} ({self.size_rule}), "
                f"{self.channels} channel{'s' if self.channels > 1 else ''} ({self.channels_rule})")
        return line + (f"; skipped {len(self.skipped)} unreadable file(s)" if self.skipped else "")

    def as_record(self) -> dict:
        """What a run's config.json keeps of it (the skipped files go to their own file)."""
        return {"size": list(self.size), "channels": self.channels, "size_rule": self.size_rule,
                "channels_rule": self.channels_rule, "images": self.images, "skipped": len(self.skipped)}


def image_suffixes() -> set[str]:
    """Every file suffix a Pillow plugin registers (PNG, JPEG, GIF, BMP, TIFF, WebP, PPM, ...)."""
    from PIL import Image
    Image.init()
    return {s.lower() for s in Image.registered_extensions()}


def walk_files(root: Path, notes: list[str]) -> list[Path]:
    """Files under `root`, sorted, following symbolic links to folders once each; loops go into `notes`.

    Hidden files and folders (a leading dot: .DS_Store, .ipynb_checkpoints) are not read.
    """
    seen: set[tuple[int, int]] = set()
    files: list[Path] = []

    def visit(folder: Path) -> None:
        st = folder.stat()
        if (st.st_dev, st.st_ino) in seen:
            notes.append(f"symbolic link loop: {folder} leads back to a folder already read; not followed again")
            return
        seen.add((st.st_dev, st.st_ino))
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith("."):
                continue
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows the link
            except OSError:
                is_dir = False
            if is_dir:
                visit(path)
            else:
                files.append(path)  # a broken link stays in: it is reported as unreadable

    visit(root)
    return files


def open_checked(path: Path, max_pixels: int):
    """Open an image lazily (header only) and refuse it before decoding when it has too many pixels."""
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides, below
        try:
            im = Image.open(path)
        except Image.DecompressionBombError as e:
            raise ValueError(f"decompression bomb guard: {e}") from e
    w, h = im.size
    if w * h > max_pixels:
        im.close()
        raise ValueError(f"decompression bomb guard: {w}x{h} = {w * h:,} pixels is more than {max_pixels:,}; "
                         f"raise max_pixels if the image is genuine")
    return im


def is_colour(im) -> bool:
    """Whether an opened image is stored in a colour mode (a palette counts when a colour is in it)."""
    mode = im.mode
    if mode in ("P", "PA"):
        palette = np.array(im.getpalette("RGB") or [0, 0, 0], dtype=np.int16).reshape(-1, 3)
        return bool((palette != palette[:, :1]).any())
    return mode in COLOUR_MODES


def to_8bit(im):
    """A Pillow image in mode L, LA, RGB or RGBA (8 bits a channel), converted by the rules above."""
    from PIL import Image, ImageOps
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        a = np.asarray(im).astype(np.int64)
        scale = 257 if a.max(initial=0) <= 65535 else 16843009  # 16-bit, else the full 32-bit range
        return Image.fromarray(np.clip((a + scale // 2) // scale, 0, 255).astype(np.uint8), "L")
    if im.mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float64))
        return Image.fromarray(np.round(np.clip(a, 0, 1) * 255).astype(np.uint8), "L")
    if im.mode == "1":
        return im.convert("L")
    if im.mode in ("P", "PA"):
        im = im.convert("RGBA")  # a palette with transparency becomes alpha here
    if im.mode in ("L", "LA", "RGB", "RGBA"):
        return im
    return im.convert("RGB")  # CMYK, YCbCr, LAB, HSV...


def composite_alpha(im):
    """LA/RGBA over a white background (the one alpha rule); L and RGB pass through."""
    from PIL import Image
    if im.mode not in ("LA", "RGBA"):
        return im
    background = Image.new(im.mode, im.size, (ALPHA_BACKGROUND,) * len(im.mode))
    return Image.alpha_composite(background, im).convert(im.mode[:-1])


def decode(path: Path, size: int, channels: int, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """One image as uint8 (channels, size, size): 8-bit, alpha composited, resized (shorter side) and
    centre-cropped."""
    from PIL import Image
    with open_checked(path, max_pixels) as im:
        im = composite_alpha(to_8bit(im))
        im = im.convert("L" if channels == 1 else "RGB")
        w, h = im.size
        scale = size / min(w, h)
        new = (max(size, round(w * scale)), max(size, round(h * scale)))
        if new != im.size:
            im = im.resize(new, Image.BILINEAR)
        left, top = (new[0] - size) // 2, (new[1] - size) // 2
        if new != (size, size):
            im = im.crop((left, top, left + size, top + size))
        a = np.asarray(im, dtype=np.uint8)
    return a[None] if channels == 1 else a.transpose(2, 0, 1)


def infer_size(shapes: list[tuple[int, int]]) -> tuple[int, str]:
    """The square side to read images at, and the rule that chose it (see the module docstring)."""
    if len(set(shapes)) == 1 and shapes[0][0] == shapes[0][1] and shapes[0][0] <= MAX_INFERRED_SIZE:
        return shapes[0][0], "inferred: the images' own size"
    median = int(statistics.median(min(s) for s in shapes))
    side = max(MIN_INFERRED_SIZE, min(MAX_INFERRED_SIZE, median)) // 4 * 4
    return side, f"inferred from the median shorter side {median}, capped at {MAX_INFERRED_SIZE}; set image size to change"


def class_groups(root: Path, files: list[Path], notes: list[str]) -> tuple[list[tuple[str | None, list[Path]]], int]:
    """Files grouped by class folder (the first folder below `root`), or one unlabeled group when `root` has no
    subfolders. Files at the top level beside class folders are left out with a note; returns how many."""
    by_class: dict[str, list[Path]] = {}
    loose = []
    for f in files:
        parts = f.relative_to(root).parts
        if len(parts) == 1:
            loose.append(f)
        else:
            by_class.setdefault(parts[0], []).append(f)
    subdirs = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not subdirs:
        return [(None, loose)], 0
    for name in subdirs:
        by_class.setdefault(name, [])
    if loose:
        notes.append(f"{len(loose)} file(s) lie at the top level of {root} beside class folders (e.g. "
                     f"{loose[0].name}) and are left out: move them into a class folder, or read them as "
                     f"unlabeled images from a folder of their own")
    return [(name, by_class[name]) for name in sorted(by_class)], len(loose)


def read_image_folder(path: str | Path, size: int | None = None, channels: int | None = None,
                      strict: bool = False, max_pixels: int = MAX_PIXELS) -> tuple[ImageData, Reading]:
    """Decode a folder of images (see the module docstring); `size`/`channels` None are inferred.

    Returns the images and how they were read. `strict` turns an unreadable file into an error.
    """
    root = checked_folder(path, size, channels)
    notes: list[str] = []
    suffixes = image_suffixes()
    files = walk_files(root, notes)
    groups, _ = class_groups(root, files, notes)
    skipped: list[str] = []

    def skip(f: Path, reason: str) -> None:
        if strict:
            raise SelfSupError(f"cannot decode image {f}: {reason}")
        skipped.append(f"{f}: {reason}")

    # pass 1: headers only (size, mode) -- cheap, and where bombs and non-images are refused
    headers: list[tuple[str | None, Path, tuple[int, int], bool]] = []
    for class_name, group in groups:
        images = [f for f in group if f.suffix.lower() in suffixes]
        found = 0
        for f in images:
            try:
                with open_checked(f, max_pixels) as im:
                    headers.append((class_name, f, im.size, is_colour(im)))
                    found += 1
            except Exception as e:  # Pillow raises many types for broken files
                skip(f, f"{type(e).__name__}: {e}")
        if class_name is not None and not found:
            others = len(group) - len(images)
            why = f"{len(images)} image file(s), none readable" if images else "no image files"
            notes.append(f"class folder {class_name!r} in {root} has {why}"
                         + (f" ({others} file(s) of other types)" if others else "")
                         + ": it is left out of the classes; add images to it or remove it")
    if not headers and not skipped:
        raise no_images(root, suffixes)

    if size is None and headers:
        size, size_rule = infer_size([s for _, _, s, _ in headers])
    else:
        size_rule = "given" if size is not None else "no image readable"
    if channels is None:
        colour = sum(c for *_, c in headers)
        channels = 3 if colour else 1
        channels_rule = (f"inferred: {colour} of {len(headers)} images are colour" if colour
                         else "inferred: all images are grayscale")
    else:
        channels_rule = "given"

    # pass 2: decode (a truncated file can pass the header and fail here)
    arrays, labels, classes, decoded = [], [], [], []
    for class_name, f, _, _ in headers:
        try:
            arrays.append(decode(f, size, channels, max_pixels))
        except Exception as e:
            skip(f, f"{type(e).__name__}: {e}")
            continue
        decoded.append(f.relative_to(root).as_posix())
        if class_name is not None:
            if not classes or classes[-1] != class_name:
                classes.append(class_name)
            labels.append(len(classes) - 1)
    for name in dict.fromkeys(c for c, *_ in headers if c is not None):
        if name not in classes:
            notes.append(f"class folder {name!r} in {root} has no readable image: it is left out of the classes; "
                         f"replace its files or remove it")
    reading = Reading(str(root), (size or 0, size or 0), channels, size_rule, channels_rule, len(arrays), skipped, notes)
    if skipped:
        names = "; ".join(skipped[:WARN_NAMES]) + (f"; and {len(skipped) - WARN_NAMES} more" if len(skipped) > WARN_NAMES else "")
        notes.append(f"skipped {len(skipped)} unreadable image(s) in {root}: {names}")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    if not arrays:
        raise SelfSupError(f"none of the {len(headers) + len(skipped)} image files in {root} could be decoded; "
                           f"the first problem: {skipped[0]}; replace them with images Pillow opens (PNG, "
                           f"JPEG, ...) or point --data elsewhere")
    images = torch.from_numpy(np.stack(arrays))
    label_tensor = torch.tensor(labels, dtype=torch.int64) if groups[0][0] is not None else None
    return ImageData(images, label_tensor, classes, name=root.name, names=decoded), reading


def image_folder(path: str | Path, size: int | None = None, channels: int | None = None,
                 strict: bool = False, max_pixels: int = MAX_PIXELS) -> ImageData:
    """The images of `read_image_folder`, without the account of how they were read."""
    return read_image_folder(path, size, channels, strict, max_pixels)[0]


def no_images(root: Path, suffixes: set[str] | frozenset[str]) -> SelfSupError:
    """The one message for a folder with no image file in it (read into memory or streamed)."""
    return SelfSupError(f"no images found in {root} (looked for {len(suffixes)} Pillow formats: .png, .jpg, "
                        f".gif, .bmp, .tif, .webp, ...); point --data at a folder of images, or of class "
                        f"folders of images")


def checked_folder(path: str | Path, size: int | None, channels: int | None) -> Path:
    """The folder as a Path, after checking it exists and that the requested size and channels make sense."""
    root = Path(path)
    if not root.is_dir():
        raise SelfSupError(f"image folder {root} does not exist or is not a folder")
    if channels not in (None, 1, 3):
        raise SelfSupError(f"channels must be 1 (grayscale) or 3 (colour), got {channels}")
    if size is not None and size < 1:
        raise SelfSupError(f"image size must be a positive number of pixels, got {size}")
    return root
