"""Paired images and captions (language-image pretraining): colour emoji with their Unicode names, or the user's
own pairs.

A `PairData` keeps uint8 images (N, C, H, W) and their tokenized captions (N, L) in one object, row i of
each belonging together; `batch(index)` cuts both with the same index, so no batching can shuffle a caption
away from its image. Optional int64 `labels` (for probes) and `categories` (for zero-shot classification:
each item's category index into `category_names`; `unseen_categories` names those kept out of training).

`emoji` (the built-in source): every fully-qualified emoji of Unicode's emoji-test.txt (Debian
`unicode-data`) except the skin-tone and hair components, drawn with Noto Color Emoji (Debian
`fonts-noto-color-emoji`; a bitmap font: 109 px strikes, drawn once and downsampled to 32x32 RGB over
white) and captioned with its CLDR short name, subgroup and group, e.g. "an emoji of woman scientist:
medium skin tone, person role, people & body". Label = the group (9 classes); category = the subgroup
(~100). Every fifth subgroup (in file order) is unseen: all its emoji go to the test split, so zero-shot
classification can be scored on categories that no training caption named. The other subgroups' emoji
are split 80/20 (seeded, per subgroup). The rendered images are cached once as uint8 (.npz, written
atomically) under ~/.cache/selfsup.

The user's pairs (`read_pairs`): a folder of images, each with a `.txt` caption of the same name beside it
(class subfolders, if any, give labels and categories), or a CSV file of `image,caption` rows (image paths
relative to the CSV; a header row naming `image` and `caption` is optional). Images are read with
`data.folder.decode`. Captions are tokenized with a WordPiece vocabulary of the training captions' words,
whole, plus single characters that spell out unseen words (`text.tokenizer.word_tokenizer`: the same ids in
every process, which a trained vocabulary does not promise); it travels in the DataSpec
(`extra["tokenizer"]`) so a run can encode prompts, and is saved as the run's tokenizer.json.
"""
from __future__ import annotations

import csv
import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from selfsup.data.base import DatasetSplits, DataSpec
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError
from selfsup.text.tokenizer import CLS_ID, PAD_ID, SEP_ID
from selfsup.utils import atomic_write

EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
EMOJI_TEST = Path("/usr/share/unicode/emoji/emoji-test.txt")
CACHE_DIR = Path.home() / ".cache/selfsup"
EMOJI_STRIKE = 109  # the one bitmap size NotoColorEmoji.ttf holds
CAPTION_LEN = 32  # subwords per caption, with [CLS] and [SEP] (emoji captions take at most ~25)
PROMPT = "an emoji of {}"  # the captions' own wording, so zero-shot prompts read like training text


# --- the data object --------------------------------------------------------------------------------
@dataclass
class PairData:
    """Images and captions, row i of each a pair; optional labels and categories (see the module docstring)."""

    images: Tensor  # uint8 (N, C, H, W)
    input_ids: Tensor  # int64 (N, L): [CLS] caption [SEP] [PAD]...
    captions: list[str]
    tokenizer_json: str
    labels: Tensor | None = None
    classes: list[str] = field(default_factory=list)
    categories: Tensor | None = None  # int64 (N,): index into category_names
    category_names: list[str] = field(default_factory=list)
    unseen_categories: list[str] = field(default_factory=list)  # categories with no item in any training split
    name: str = "pairs"
    hflip_keeps_label: bool = False  # captions say "left" and "right"

    def __post_init__(self) -> None:
        n = len(self.images)
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"images must be uint8 (N, C, H, W), got {self.images.dtype} {tuple(self.images.shape)}")
        for what, value in (("captions", self.captions), ("token rows", self.input_ids), ("labels", self.labels),
                            ("categories", self.categories)):
            if value is not None and len(value) != n:
                raise ValueError(f"{n} images but {len(value)} {what}")

    def __len__(self) -> int:
        return len(self.images)

    @property
    def tokenizer(self):
        if not hasattr(self, "_tokenizer"):  # parsed once per object (spec and decoding read it)
            from selfsup.text.tokenizer import tokenizer_from_json
            object.__setattr__(self, "_tokenizer", tokenizer_from_json(self.tokenizer_json))
        return self._tokenizer

    @property
    def spec(self) -> DataSpec:
        _, c, h, w = self.images.shape
        return DataSpec("image-text", channels=c, height=h, width=w, vocab_size=self.tokenizer.get_vocab_size(),
                        seq_len=self.input_ids.shape[1], num_classes=len(self.classes), size=len(self),
                        extra={"tokenizer": self.tokenizer_json})

    def subset(self, index: Tensor, name: str | None = None) -> "PairData":
        index = torch.arange(len(self))[index].view(-1)
        pick = lambda t: None if t is None else t[index]
        return replace(self, images=self.images[index], input_ids=self.input_ids[index],
                       captions=[self.captions[i] for i in index.tolist()], labels=pick(self.labels),
                       categories=pick(self.categories), name=name or self.name)

    def save_to(self, run_dir: str | Path) -> Path:
        """Write the tokenizer as `tokenizer.json` in the run folder: reloading the data re-encodes with it."""
        from selfsup.text.tokenizer import save_tokenizer
        return save_tokenizer(self.tokenizer, run_dir)

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """The raw batch: images, caption tokens and their attention mask, all cut at the same `index`."""
        input_ids = self.input_ids[index]
        return {"images": self.images[index], "input_ids": input_ids, "attention_mask": input_ids != PAD_ID}


def caption_tokens(tokenizer, texts: list[str], seq_len: int = CAPTION_LEN) -> Tensor:
    """(N, seq_len) int64: [CLS] subwords [SEP] [PAD]..., the subwords truncated to seq_len - 2."""
    from selfsup.text.tokenizer import encode
    ids = encode(tokenizer, texts)
    out = torch.full((len(ids), seq_len), PAD_ID, dtype=torch.long)
    for i, row in enumerate(ids):  # once per caption list, not in a training loop
        row = [CLS_ID] + row[:seq_len - 2] + [SEP_ID]
        out[i, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out


def make_pairs(images: Tensor, captions: list[str], train_index: Tensor, test_index: Tensor | None = None, *,
               labels: Tensor | None = None, classes: list[str] | None = None, categories: Tensor | None = None,
               category_names: list[str] | None = None, unseen: list[str] | None = None, tokenizer=None,
               seq_len: int = CAPTION_LEN, name: str = "pairs") -> DatasetSplits:
    """Tokenize the captions (with the words of the train captions only, unless a tokenizer is given) and split."""
    from selfsup.text.tokenizer import word_tokenizer
    if len(captions) != len(images):
        raise SelfSupError(f"{name}: {len(images)} images but {len(captions)} captions")
    if len(train_index) == 0:
        raise SelfSupError(f"{name}: no image-caption pairs to train on")
    if tokenizer is None:
        tokenizer = word_tokenizer([captions[i] for i in train_index.tolist()])
    whole = PairData(images, caption_tokens(tokenizer, captions, seq_len), list(captions), tokenizer.to_str(),
                     labels, list(classes or []), categories, list(category_names or []), list(unseen or []), name)
    test = None if test_index is None else whole.subset(test_index, f"{name}-test")
    return DatasetSplits(whole.subset(train_index, f"{name}-train" if test is not None else name), test)


# --- emoji ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Emoji:
    text: str
    name: str
    group: str
    subgroup: str


def parse_emoji_test(text: str) -> list[Emoji]:
    """The fully-qualified emoji of an emoji-test.txt, in file order, with their group and subgroup."""
    out, group, subgroup = [], "", ""
    for line in text.splitlines():
        if line.startswith("# group:"):
            group = line.split(":", 1)[1].strip()
        elif line.startswith("# subgroup:"):
            subgroup = line.split(":", 1)[1].strip()
        elif line and not line.startswith("#") and "; fully-qualified" in line:
            codes, comment = line.split(";", 1)[0], line.split("#", 1)[1].strip()
            # comment: "<emoji> E<version> <name>"
            name = comment.split(" ", 2)[2] if comment.count(" ") >= 2 else comment
            out.append(Emoji("".join(chr(int(c, 16)) for c in codes.split()), name, group, subgroup))
    return out


def emoji_caption(e: Emoji) -> str:
    return PROMPT.format(f"{e.name}, {category_words(e.subgroup)}, {e.group.lower()}")


def category_words(subgroup: str) -> str:
    """A subgroup as words: "animal-mammal" -> "animal mammal"."""
    return subgroup.replace("-", " ")


def render_emoji(texts: list[str], size: int = 32, font: Path = EMOJI_FONT) -> np.ndarray:
    """uint8 (N, 3, size, size): each emoji drawn from the colour bitmap font over white, downsampled."""
    from PIL import Image, ImageDraw, ImageFont
    face = ImageFont.truetype(str(font), EMOJI_STRIKE)
    out = np.empty((len(texts), 3, size, size), dtype=np.uint8)
    for i, t in enumerate(texts):  # rendering happens once; the result is cached
        canvas = Image.new("RGBA", (136, 136), (255, 255, 255, 0))
        ImageDraw.Draw(canvas).text((0, 4), t, font=face, embedded_color=True)
        flat = Image.alpha_composite(Image.new("RGBA", canvas.size, (255, 255, 255, 255)), canvas).convert("RGB")
        out[i] = np.asarray(flat.resize((size, size), Image.LANCZOS)).transpose(2, 0, 1)
    return out


def _emoji_files(font: Path, table: Path) -> None:
    missing = [(p, pkg) for p, pkg in ((font, "fonts-noto-color-emoji"), (table, "unicode-data")) if not p.exists()]
    if missing:
        raise SelfSupError("the emoji data needs " + " and ".join(f"{p} (Debian package {pkg})" for p, pkg in missing)
                           + ": install with `sudo apt-get install fonts-noto-color-emoji unicode-data`")


def cached_emoji_images(emoji: list[Emoji], size: int, font: Path, cache_dir: Path | None) -> np.ndarray:
    """The rendered images, from the cache when it holds this font, list and size (else drawn and cached)."""
    key = hashlib.sha256(f"{size}|{font.stat().st_size}|{font.stat().st_mtime_ns}|".encode()
                         + "\n".join(e.text for e in emoji).encode()).hexdigest()[:16]
    path = (cache_dir or CACHE_DIR) / f"emoji-{size}px-{key}.npz"
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as f:
                images = f["images"]
            if images.shape == (len(emoji), 3, size, size) and images.dtype == np.uint8:
                return images
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache is drawn again
    images = render_emoji([e.text for e in emoji], size, font)

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, images=images)
    try:
        atomic_write(path, write)
    except (OSError, SelfSupError):
        pass  # no writable cache: draw again next time
    return images


@DATASETS.register("emoji")
def emoji(size: int = 32, unseen_every: int = 5, test_fraction: float = 0.2, seed: int = 0,
          font: str | Path = EMOJI_FONT, table: str | Path = EMOJI_TEST, cache_dir: str | Path | None = None,
          limit: int | None = None, tokenizer=None) -> DatasetSplits:
    """Colour emoji with their Unicode names as captions (see the module docstring). `limit` keeps the first
    `limit` emoji of the table (tests); `unseen_every` = 0 holds no category out of training; `tokenizer` reuses
    a run's (else one is trained on the training captions)."""
    font, table = Path(font), Path(table)
    _emoji_files(font, table)
    items = [e for e in parse_emoji_test(table.read_text(encoding="utf-8")) if e.group != "Component"]
    items = items[:limit] if limit else items
    if not items:
        raise SelfSupError(f"{table} lists no fully-qualified emoji")
    images = torch.from_numpy(cached_emoji_images(items, size, font, Path(cache_dir) if cache_dir else None))
    groups = list(dict.fromkeys(e.group for e in items))
    subgroups = list(dict.fromkeys(e.subgroup for e in items))
    names = [category_words(s) for s in subgroups]
    unseen = set(subgroups[unseen_every - 1::unseen_every]) if unseen_every else set()
    labels = torch.tensor([groups.index(e.group) for e in items])
    categories = torch.tensor([subgroups.index(e.subgroup) for e in items])
    g = torch.Generator().manual_seed(seed)
    train, test = [], []
    for s, sub in enumerate(subgroups):  # per subgroup: every subgroup seen in training has test items too
        members = torch.nonzero(categories == s).flatten()
        if sub in unseen:
            test.append(members)
            continue
        members = members[torch.randperm(len(members), generator=g)]
        k = int(round(test_fraction * len(members))) if len(members) > 1 else 0
        test.append(members[:k])
        train.append(members[k:])
    return make_pairs(images, [emoji_caption(e) for e in items], torch.sort(torch.cat(train)).values,
                      torch.sort(torch.cat(test)).values, labels=labels, classes=[g.lower() for g in groups],
                      categories=categories, category_names=names,
                      unseen=[category_words(s) for s in subgroups if s in unseen], tokenizer=tokenizer, name="emoji")


# --- the user's own pairs ---------------------------------------------------------------------------------
def read_pairs(path: str | Path, size: int | None = None, channels: int | None = None,
               tokenizer=None) -> DatasetSplits:
    """A folder of images with `.txt` captions beside them, or a CSV of image,caption rows (module docstring).

    No test split of its own: class subfolders give labels, and `held_out_test` carves a test set from them.
    """
    from selfsup.data.folder import decode, image_suffixes
    path = Path(path)
    size, channels = size or 32, channels or 3
    if channels not in (1, 3):
        raise SelfSupError(f"channels must be 1 (grayscale) or 3 (colour), got {channels}")
    if path.is_file() and path.suffix.lower() == ".csv":
        rows = _csv_rows(path)
        files, captions, folders = [path.parent / r[0] for r in rows], [r[1] for r in rows], None
    elif path.is_dir():
        suffixes = image_suffixes()
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        files = [f for f in files if f.with_suffix(".txt").is_file()]
        captions = [f.with_suffix(".txt").read_text(encoding="utf-8", errors="replace").strip() for f in files]
        folders = [f.relative_to(path).parts[0] if len(f.relative_to(path).parts) > 1 else None for f in files]
    else:
        raise SelfSupError(f"image-caption pairs: {path} is neither a folder (images with .txt captions beside "
                           f"them) nor a .csv file of image,caption rows")
    if not files:
        raise SelfSupError(f"no image-caption pairs in {path}: put a .txt caption of the same name beside each "
                           f"image (cat.png + cat.txt), or give a CSV of image,caption rows")
    images = []
    for f in files:
        try:
            images.append(decode(f, size, channels))
        except (OSError, SelfSupError, ValueError) as e:
            raise SelfSupError(f"cannot read image {f} of an image-caption pair: {e}") from e
    labels, classes = None, []
    if folders is not None and all(folders):
        classes = sorted(set(folders))
        labels = torch.tensor([classes.index(c) for c in folders])
    index = torch.arange(len(files))
    return make_pairs(torch.from_numpy(np.stack(images)), captions, index, None, labels=labels, classes=classes,
                      categories=labels, category_names=classes, tokenizer=tokenizer, name=path.stem)


def _csv_rows(path: Path) -> list[tuple[str, str]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = [r for r in csv.reader(f) if r]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise SelfSupError(f"cannot read {path} as CSV: {e}") from e
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["image", "caption"]:
        rows = rows[1:]
    bad = [i for i, r in enumerate(rows) if len(r) < 2 or not r[0].strip() or not r[1].strip()]
    if bad:
        raise SelfSupError(f"{path}: row {bad[0] + 1} is not `image path,caption` (every row needs both)")
    missing = [r[0] for r in rows if not (path.parent / r[0]).is_file()]
    if missing:
        raise SelfSupError(f"{path}: image {missing[0]} does not exist (paths are relative to the CSV's folder)"
                           + (f"; {len(missing) - 1} more missing" if len(missing) > 1 else ""))
    return [(r[0].strip(), r[1].strip()) for r in rows]


def is_pair_source(path: str | Path) -> bool:
    """Whether `path` reads as the user's pairs: a .csv file, or a folder holding .txt captions."""
    path = Path(path)
    return (path.is_file() and path.suffix.lower() == ".csv") or (path.is_dir() and any(path.rglob("*.txt")))
