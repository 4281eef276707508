"""Text data: Debian's `fortunes` corpus (category = label), the user's own text files, or the large unlabeled GCIDE
corpus (`gcide`, streamed), tokenized once.

A `TextData` keeps the whole corpus as token tensors in memory:
- `input_ids` (N, L) int64: [CLS] subwords [SEP] [PAD]..., truncated to L = `seq_len` (MLM, CLM, probes);
- `pair_tokens` (N, L - 3) int64 and `pair_word_starts` (N, L - 3) bool: the document's last L - 3
  subwords (starting on a word), and which of them start a whitespace-separated word. NSP/SOP methods
  cut this window in two on the device, only where a word starts, into "[CLS] A [SEP] B [SEP]" pairs of
  length <= L (`views.text.nsp_pairs`; a "segment from another document" comes from another row).
`batch(index)` returns these as a dict of tensors; `spec` is a DataSpec(modality="text", ...).

Unlabeled pretraining corpus (`gcide`): the GNU Collaborative International Dictionary of English from
Debian's `dict-gcide` (Webster's 1913 with later additions): 203k entries, 40 MB of English prose once
unpacked (definitions, usage notes, and quotations from English literature). Each entry is one document,
cleaned of the dictionary's markup; it is streamed from the dictzip file (gzip-compatible), never held whole
as text, and tokenized in chunks. Every 100th entry is the held-out test split (held-out perplexity).

Fortunes: files in /usr/share/games/fortunes/, entries separated by lines holding only `%`. The
default keeps the categories with at least 400 non-empty entries (16 of them in Debian's
fortunes-min/-mod packages; the offensive `off/` folder is never read) and draws 400 entries of each at
random (seeded), so classes are balanced; texts are truncated to 64 subwords.
"""
from __future__ import annotations

import base64
import gzip
import itertools
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from selfsup.data.base import DatasetSplits, DataSpec
from selfsup.data.registry import DATASETS
from selfsup.errors import SelfSupError
from selfsup.text.tokenizer import CLS_ID, PAD_ID, SEP_ID

FORTUNE_DIR = Path("/usr/share/games/fortunes")
GCIDE_DIR = Path("/usr/share/dictd")
TEXT_SUFFIXES = {"", ".txt", ".text", ".md"}
# Control bytes that text does not hold (tab, newline, vertical tab, form feed and carriage return are
# allowed). Random bytes hold about 11%, an ELF binary about 38% and NUL bytes, Debian's fortunes < 0.2%.
CONTROL_BYTES = bytes([*range(0, 9), *range(14, 32), 127])
MAX_CONTROL_SHARE = 0.05
MAX_DOCUMENT_CHARS = 100_000  # a "paragraph" this long is one huge line (a dump, minified data), not prose
MAX_LINE_BYTES = 1_000_000  # a file with a longer line is skipped after a streamed scan, never loaded whole
# Binary formats named by their first bytes, so the skip says what the file is.
MAGIC = {b"\x7fELF": "an executable (ELF)", b"PK\x03\x04": "a zip archive (a NumPy .npz is one)",
         b"\x93NUMPY": "a NumPy .npy array", b"\x89PNG": "a PNG image", b"\xff\xd8\xff": "a JPEG image",
         b"%PDF": "a PDF document", b"\x1f\x8b": "gzip-compressed"}


# --- parsing ---------------------------------------------------------------------------------------
def decode_text(data: bytes) -> str:
    """UTF-8 when valid, else Latin-1 (old fortune files; Latin-1 decodes any byte, so nothing is lost)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("latin-1")


def parse_fortunes(data: bytes) -> list[str]:
    """Entries of a fortune file: text between lines that hold only `%`; empty entries are dropped.

    Each entry is decoded on its own, so one bad byte does not change how the rest of the file reads.
    """
    entries, current = [], []
    for line in data.splitlines():
        if line.strip() == b"%":
            entries.append(b"\n".join(current))
            current = []
        else:
            current.append(line)
    entries.append(b"\n".join(current))
    texts = (decode_text(e).strip() for e in entries)
    return [t for t in texts if t]


def parse_paragraphs(data: bytes) -> list[str]:
    """Documents of a plain text file: fortune-style `%` entries if it has any, else blank-line paragraphs."""
    if any(line.strip() == b"%" for line in data.splitlines()):
        return parse_fortunes(data)
    # Split the bytes, then decode each paragraph: one bad byte makes only its own paragraph Latin-1.
    paragraphs = (decode_text(p).strip() for p in data.replace(b"\r\n", b"\n").split(b"\n\n"))
    return [p for p in paragraphs if p]


def binary_reason(data: bytes) -> str | None:
    """Why `data` is not text (NUL bytes, or too many control bytes), or None when it looks like text."""
    kind = next((name for magic, name in MAGIC.items() if data.startswith(magic)), None)
    if kind is not None:
        return f"binary ({kind}), not text"
    if b"\x00" in data:
        return "binary (it holds NUL bytes), not text"
    share = (len(data) - len(data.translate(None, CONTROL_BYTES))) / max(len(data), 1)
    if share > MAX_CONTROL_SHARE:
        return f"binary ({share:.0%} control bytes), not text"
    return None


@dataclass
class TextReading:
    """How the user's text files were read: documents kept, files skipped and why, notes (warnings given).

    The text counterpart of `data.folder.Reading`: a run folder records `as_record()` and the skipped files.
    """

    root: str
    documents: int = 0
    files: int = 0
    skipped: list[str] = field(default_factory=list)  # "path: reason", one per file left out
    notes: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        line = f"read {self.documents} documents from {self.files} text file(s) in {self.root}"
        return line + (f"; skipped {len(self.skipped)} file(s)" if self.skipped else "")

    def as_record(self) -> dict:
        return {"documents": self.documents, "files": self.files, "skipped": len(self.skipped),
                "notes": list(self.notes)}

    def read(self, path: Path, parse=parse_paragraphs, note_latin1: bool = True) -> list[str]:
        """The documents of one file; a file that cannot be text is skipped, recorded, and gives none."""
        try:
            longest = longest_line(path, MAX_LINE_BYTES)
            if longest > MAX_LINE_BYTES:
                return self.skip(path, f"a line of over {MAX_LINE_BYTES:,} bytes (minified data or a dump, not "
                                       f"prose); split it into lines and paragraphs")
            data = path.read_bytes()
        except OSError as e:
            return self.skip(path, f"unreadable ({e.strerror or e})")
        reason = "empty" if not data.strip() else binary_reason(data)
        if reason:
            return self.skip(path, reason)
        documents = parse(data)
        huge = [d for d in documents if len(d) > MAX_DOCUMENT_CHARS]
        if huge and len(huge) == len(documents):
            return self.skip(path, f"one huge line or paragraph ({len(huge[0]):,} characters, over "
                                   f"{MAX_DOCUMENT_CHARS:,}); split it into paragraphs with blank lines")
        if huge:
            self.notes.append(f"{path}: left out {len(huge)} paragraph(s) over {MAX_DOCUMENT_CHARS:,} characters")
        if note_latin1 and not is_utf8(data):
            self.notes.append(f"{path}: not valid UTF-8; documents that are not were read as Latin-1")
        self.files += 1
        kept = [d for d in documents if len(d) <= MAX_DOCUMENT_CHARS]
        self.documents += len(kept)
        return kept

    def skip(self, path: Path, reason: str) -> list[str]:
        self.skipped.append(f"{path}: {reason}")
        return []

    def warn(self) -> None:
        """One warning per note and one for the skipped files (the first few named)."""
        shown = "; ".join(self.skipped[:5]) + (f"; and {len(self.skipped) - 5} more" if len(self.skipped) > 5 else "")
        for note in self.notes + ([f"skipped {len(self.skipped)} file(s) in {self.root}: {shown}"] if self.skipped else []):
            warnings.warn(note, stacklevel=3)

    def nothing_read(self) -> SelfSupError:
        first = f"; the first skipped: {self.skipped[0]}" if self.skipped else ""
        return SelfSupError(f"no text documents in {self.root}: {len(self.skipped)} file(s) skipped{first}. "
                            f"Give UTF-8 (or Latin-1) text files, documents separated by blank lines or `%` lines")


def longest_line(path: Path, stop: int, block: int = 1 << 20) -> int:
    """The byte length of the file's longest line, streamed a block at a time (a huge one-line file is not
    loaded); stops counting once a line passes `stop`."""
    longest = current = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(block), b""):
            lines = chunk.split(b"\n")
            current += len(lines[0])
            if len(lines) > 1:
                longest = max(longest, current, *map(len, lines[1:-1]))
                current = len(lines[-1])
            if max(longest, current) > stop:
                return max(longest, current)
    return max(longest, current)


def is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def read_fortune_categories(root: str | Path = FORTUNE_DIR) -> dict[str, list[str]]:
    """{category: entries} for every fortune file directly in `root` (skips .dat/.u8 indexes and folders)."""
    root = Path(root)
    if not root.is_dir():
        raise SelfSupError(f"fortunes not found at {root}; install them with "
                           f"`sudo apt-get install fortunes fortunes-min` (Debian/Ubuntu)")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix == "")
    reading = TextReading(str(root))  # old fortune files are Latin-1 by design: no note for that
    categories = {p.name: reading.read(p, parse_fortunes, note_latin1=False) for p in files}
    reading.warn()
    return {name: entries for name, entries in categories.items() if entries}


def balance_categories(by_category: dict[str, list[str]], min_entries: int, per_class: int,
                       seed: int = 0) -> tuple[list[str], list[int], list[str]]:
    """Keep categories with >= `min_entries` entries and draw `per_class` of each (seeded) for balance."""
    kept = sorted(c for c, entries in by_category.items() if len(entries) >= min_entries)
    if len(kept) < 2:
        raise SelfSupError(f"only {len(kept)} fortune categories have at least {min_entries} entries; "
                           f"lower min_entries")
    g = torch.Generator().manual_seed(seed)
    texts, labels = [], []
    for label, category in enumerate(kept):
        entries = by_category[category]
        order = torch.randperm(len(entries), generator=g)[:per_class].tolist()
        texts += [entries[i] for i in order]
        labels += [label] * len(order)
    return texts, labels, kept


# --- vectorised packing -----------------------------------------------------------------------------
def pack_rows(flat: Tensor, starts: Tensor, lengths: Tensor, width: int, pad: int = PAD_ID) -> Tensor:
    """Rows (N, width) with row i = flat[starts[i] : starts[i] + lengths[i]], then `pad` (lengths <= width)."""
    cols = torch.arange(width)
    valid = cols < lengths[:, None]
    index = (starts[:, None] + cols).clamp(max=max(len(flat) - 1, 0))
    return torch.where(valid, flat[index] if len(flat) else torch.full_like(index, pad), torch.full_like(index, pad))


def next_word_start(word_starts: Tensor) -> Tensor:
    """For each flat position k, the first position >= k that starts a word (len(word_starts) if none)."""
    positions = torch.arange(len(word_starts))
    marked = torch.where(word_starts, positions, torch.full_like(positions, len(word_starts)))
    return marked.flip(0).cummin(0).values.flip(0)


def pair_windows(lengths: Tensor, offsets: Tensor, word_starts: Tensor, width: int) -> tuple[Tensor, Tensor]:
    """(start, length) of each document's last <= `width` subwords, moved to start on a word when it can.

    The window ends where the document ends, so a sentence pair's B segment ends a document whether it is
    the true continuation or another document's (a content cue the pair tasks would otherwise learn).
    """
    ends = offsets + lengths
    start = offsets + (lengths - width).clamp(min=0)
    if len(word_starts):
        on_word = next_word_start(word_starts)[start.clamp(max=len(word_starts) - 1)]
        start = torch.where(on_word <= ends - 2, on_word, start)  # keep >= 2 subwords: a pair needs them
    return start, ends - start


def token_tensors(ids: list[list[int]], seq_len: int, word_starts: list[list[bool]] | None = None) -> dict[str, Tensor]:
    """input_ids (N, seq_len) with [CLS]/[SEP], and each document's pair window (N, seq_len - 3).

    `word_starts` (per subword: does it start a word) defaults to every subword starting one.
    """
    lengths = torch.tensor([len(x) for x in ids], dtype=torch.long)
    flat = torch.tensor(list(itertools.chain.from_iterable(ids)), dtype=torch.long)
    flat_starts = (torch.ones(len(flat), dtype=torch.bool) if word_starts is None else
                   torch.tensor(list(itertools.chain.from_iterable(word_starts)), dtype=torch.bool))
    offsets = torch.cumsum(lengths, 0) - lengths
    n = len(ids)
    # Single document: [CLS] body [SEP], body truncated to seq_len - 2.
    body_len = lengths.clamp(max=seq_len - 2)
    input_ids = torch.full((n, seq_len), PAD_ID, dtype=torch.long)
    input_ids[:, 0] = CLS_ID
    input_ids[:, 1:seq_len - 1] = pack_rows(flat, offsets, body_len, seq_len - 2)
    input_ids[torch.arange(n), body_len + 1] = SEP_ID
    # Pairs: the window that "[CLS] A [SEP] B [SEP]" cuts in two on the device (views.text.nsp_pairs).
    width = seq_len - 3
    start, length = pair_windows(lengths, offsets, flat_starts, width)
    pair_word_starts = pack_rows(flat_starts.long(), start, length, width, pad=0).bool()
    return {"input_ids": input_ids, "pair_tokens": pack_rows(flat, start, length, width),
            "pair_word_starts": pair_word_starts}


# --- the data object --------------------------------------------------------------------------------
@dataclass
class TextData:
    """A tokenized corpus in memory, with optional int64 labels (N,) and the tokenizer (as JSON)."""

    input_ids: Tensor
    pair_tokens: Tensor
    pair_word_starts: Tensor
    labels: Tensor | None
    classes: list[str]
    tokenizer_json: str
    texts: list[str] = field(default_factory=list)
    name: str = "text"

    def __post_init__(self) -> None:
        n = len(self.input_ids)
        if self.labels is not None and len(self.labels) != n:
            raise ValueError(f"{n} documents but {len(self.labels)} labels")

    @classmethod
    def from_texts(cls, texts: list[str], labels: list[int] | None = None, classes: list[str] | None = None,
                   tokenizer=None, seq_len: int = 64, vocab_size: int = 4000, name: str = "text") -> "TextData":
        """Tokenize `texts` once (training a WordPiece tokenizer on them when none is given).

        Documents with fewer than 2 subwords are dropped: they cannot make two segments.
        """
        from selfsup.text.tokenizer import encode_with_word_starts, train_tokenizer

        if seq_len < 7:
            raise SelfSupError(f"seq_len must be at least 7 to hold a segment pair, got {seq_len}")
        if not texts:
            raise SelfSupError(f"{name}: no text documents found")
        if tokenizer is None:
            tokenizer = train_tokenizer(texts, vocab_size)
        ids, word_starts = encode_with_word_starts(tokenizer, texts)
        keep = [i for i, x in enumerate(ids) if len(x) >= 2]
        if not keep:
            raise SelfSupError(f"{name}: every document is shorter than 2 subwords")
        tensors = token_tensors([ids[i] for i in keep], seq_len, [word_starts[i] for i in keep])
        kept_labels = None if labels is None else torch.tensor([labels[i] for i in keep], dtype=torch.long)
        return cls(labels=kept_labels, classes=list(classes or []), tokenizer_json=tokenizer.to_str(),
                   texts=[texts[i] for i in keep], name=name, **tensors)

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def seq_len(self) -> int:
        return self.input_ids.shape[1]

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    @property
    def tokenizer(self):
        if not hasattr(self, "_tokenizer"):
            from selfsup.text.tokenizer import tokenizer_from_json
            object.__setattr__(self, "_tokenizer", tokenizer_from_json(self.tokenizer_json))
        return self._tokenizer

    @property
    def spec(self) -> DataSpec:
        return DataSpec("text", channels=0, height=0, width=0, vocab_size=self.vocab_size, seq_len=self.seq_len,
                        num_classes=len(self.classes), extra={"pair_len": self.pair_tokens.shape[1]})

    def subset(self, index: Tensor, name: str | None = None) -> "TextData":
        index = torch.as_tensor(index, dtype=torch.long)
        out = TextData(self.input_ids[index], self.pair_tokens[index], self.pair_word_starts[index],
                       None if self.labels is None else self.labels[index], list(self.classes),
                       self.tokenizer_json, [self.texts[i] for i in index.tolist()] if self.texts else [],
                       name or self.name)
        if hasattr(self, "_tokenizer"):
            object.__setattr__(out, "_tokenizer", self._tokenizer)
        return out

    def batch(self, index: Tensor) -> dict[str, Tensor]:
        """The raw batch a text method's `loss` receives (a dict of tensors; the trainer moves it to device)."""
        input_ids = self.input_ids[index]
        return {"input_ids": input_ids, "attention_mask": input_ids != PAD_ID,
                "pair_tokens": self.pair_tokens[index], "pair_word_starts": self.pair_word_starts[index]}

    def labeled_batch(self, index: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        assert self.labels is not None, f"{self.name} has no labels"
        return self.batch(index), self.labels[index]

    def save_to(self, run_dir: str | Path) -> Path:
        """Write the tokenizer as `tokenizer.json` in the run folder (generation and reloading read it)."""
        from selfsup.text.tokenizer import save_tokenizer
        return save_tokenizer(self.tokenizer, run_dir)


# --- sources ----------------------------------------------------------------------------------------
@DATASETS.register("fortunes")
def fortunes(root: str | Path = FORTUNE_DIR, seq_len: int = 64, vocab_size: int = 4000, min_entries: int = 400,
             per_class: int = 400, seed: int = 0, tokenizer=None) -> DatasetSplits:
    """Debian fortunes, balanced: categories with >= `min_entries` entries, `per_class` drawn from each.

    Pass `tokenizer` (e.g. `load_tokenizer(run_dir)`) to re-encode with a saved run's vocabulary.
    No test split of its own: `make_splits` carves one out per class.
    """
    texts, labels, classes = balance_categories(read_fortune_categories(root), min_entries, per_class, seed)
    return DatasetSplits(TextData.from_texts(texts, labels, classes, tokenizer, seq_len, vocab_size, "fortunes"),
                         None)


def text_files(path: str | Path, seq_len: int = 64, vocab_size: int = 4000, tokenizer=None) -> DatasetSplits:
    """The user's text: a file or a flat folder (unlabeled), or a folder with one subfolder per class.

    Each file is cut into documents: fortune-style `%` entries when it has them, else blank-line paragraphs.
    Files that cannot be text (empty, unreadable, binary, one huge line) are skipped with a warning and
    listed in the returned splits' `reading` (a `TextReading`); none left raises a SelfSupError.
    """
    path = Path(path)
    if not path.exists():
        raise SelfSupError(f"no such text file or folder: {path}")
    reading = TextReading(str(path))
    labels, classes = None, []
    if path.is_file():
        texts = reading.read(path)
    else:
        class_dirs = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if class_dirs:
            texts, labels, classes = [], [], [d.name for d in class_dirs]
            for label, d in enumerate(class_dirs):
                docs = [t for f in _text_files_in(d) for t in reading.read(f)]
                texts += docs
                labels += [label] * len(docs)
        else:
            texts = [t for f in _text_files_in(path) for t in reading.read(f)]
    reading.warn()
    if not texts and not reading.skipped and not reading.files:
        raise SelfSupError(f"no text files ({', '.join(repr(x) for x in sorted(TEXT_SUFFIXES))} suffixes) in {path}; "
                           f"text methods read text files (images are for image methods)")
    if not texts:
        raise reading.nothing_read()
    data = TextData.from_texts(texts, labels, classes, tokenizer, seq_len, vocab_size, path.name)
    return DatasetSplits(data, None, reading)


def _text_files_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES
                  and not p.name.startswith("."))


# --- GCIDE: the large unlabeled corpus ----------------------------------------------------------------
_B64 = {c: i for i, c in enumerate("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")}
_PRONUNCIATION = re.compile(r"\\[^\\\n]*\\")  # \Ab"so*lute\ on the headword line
_SOURCE_LINE = re.compile(r"^[ \t]*\[[^\]\n]*\][ \t]*$", re.MULTILINE)  # [1913 Webster], [PJC], [WordNet 1.5]
_SOURCE_TAG = re.compile(r"\[(?:[^\]\n]*(?:Webster|WordNet|Century)[^\]\n]*|PJC)\]")  # the same tags inline
_ACCENT = re.compile(r"\[[=\-~'`\"^.]?([a-zA-Z])[\^]?\]")  # [=a], [e^], ['e], [.a]: the letter without its mark


def dictd_number(text: str) -> int:
    """A dictd index number (offset or length): base 64, most significant digit first."""
    value = 0
    for char in text:
        value = value * 64 + _B64[char]
    return value


def gcide_entries_index(index_path: Path) -> list[tuple[int, int]]:
    """(offset, length) of every dictionary entry, in file order; headwords that share an entry count once,
    and the 00-* records (00-database-info...: the package's own description) are left out."""
    spans = set()
    with open(index_path, "rb") as f:
        for line in f:
            fields = line.rstrip(b"\n").split(b"\t")
            if len(fields) < 3 or fields[0].startswith(b"00-"):  # 00-database-info, 00-gcide-url...
                continue
            try:
                spans.add((dictd_number(fields[1].decode("ascii")), dictd_number(fields[2].decode("ascii"))))
            except (KeyError, UnicodeDecodeError):
                continue  # a malformed index line: that entry is left out
    return sorted(spans)


def clean_gcide_entry(raw: bytes) -> str:
    """Plain prose from one entry: no pronunciation, no source tags ([1913 Webster]), no cross-reference
    braces ({Absolute zero} -> Absolute zero), accent codes as bare letters ([=a] -> a), whitespace collapsed.
    Rarer named character codes ([ae], [root]) and usage labels ([Obs.]) are kept as they are."""
    text = _SOURCE_TAG.sub("", _SOURCE_LINE.sub("", decode_text(raw)))
    text = _PRONUNCIATION.sub("", text, count=1).replace("{", "").replace("}", "")
    text = _ACCENT.sub(r"\1", text)
    return " ".join(text.split()).replace(" ,", ",")


def gcide_paths(root: str | Path | None = None) -> tuple[Path, Path]:
    root = Path(GCIDE_DIR if root is None else root)
    dict_path, index_path = root / "gcide.dict.dz", root / "gcide.index"
    if not dict_path.is_file() or not index_path.is_file():
        raise SelfSupError(f"the GCIDE dictionary is not installed ({dict_path} and {index_path} not found); "
                           f"install Debian's dict-gcide package: `sudo apt-get install dict-gcide`")
    return dict_path, index_path


def iter_gcide(root: str | Path | None = None, every: int = 1, skip: int = 0, keep: int | None = None):
    """Stream the cleaned entries of GCIDE in file order: every `every`-th entry, starting at `skip`, at
    most `keep` of them. The dictzip file is read as one gzip stream, forward only."""
    dict_path, index_path = gcide_paths(root)
    spans = gcide_entries_index(index_path)[skip::every][:keep]
    position = 0
    try:
        with gzip.open(dict_path, "rb") as f:
            for offset, length in spans:
                if offset > position:
                    f.seek(offset)  # forward: gzip decompresses up to there
                elif offset < position:
                    continue  # overlaps the entry before (not in Debian's file): skip it
                raw = f.read(length)
                position = offset + len(raw)
                text = clean_gcide_entry(raw)
                if text:
                    yield text
    except (OSError, EOFError) as e:
        raise SelfSupError(f"{dict_path} cannot be read as a dictzip/gzip file ({e}); reinstall the dict-gcide "
                           f"package: `sudo apt-get install --reinstall dict-gcide`") from e


def text_data_streamed(documents, tokenizer, seq_len: int, name: str, chunk: int = 20_000) -> TextData:
    """TextData from an iterable of documents, tokenized `chunk` documents at a time (only the tokens kept)."""
    from selfsup.text.tokenizer import encode_with_word_starts

    parts: list[dict[str, Tensor]] = []
    documents = iter(documents)
    while batch := list(itertools.islice(documents, chunk)):
        ids, word_starts = encode_with_word_starts(tokenizer, batch)
        keep = [i for i, x in enumerate(ids) if len(x) >= 2]
        if keep:
            parts.append(token_tensors([ids[i] for i in keep], seq_len, [word_starts[i] for i in keep]))
    if not parts:
        raise SelfSupError(f"{name}: no document of at least 2 subwords")
    tensors = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return TextData(labels=None, classes=[], tokenizer_json=tokenizer.to_str(), name=name, **tensors)


@DATASETS.register("gcide")
def gcide(root: str | Path | None = None, seq_len: int = 64, vocab_size: int = 8000, max_documents: int | None = None,
          heldout_every: int = 100, tokenizer=None) -> DatasetSplits:
    """GCIDE entries (unlabeled; Debian's dict-gcide): train = all but every `heldout_every`-th entry, test =
    those. `max_documents` keeps an evenly spread subset (every k-th entry) for quick runs. The WordPiece
    vocabulary (8,000: twice the fortunes' for a 20x larger corpus) is trained on the streamed train entries.
    """
    from selfsup.text.tokenizer import train_tokenizer

    if heldout_every < 2:
        raise SelfSupError(f"heldout_every must be at least 2 (every k-th entry is held out), got {heldout_every}")
    total = len(gcide_entries_index(gcide_paths(root)[1]))
    every = 1 if max_documents is None else max(1, -(-total // max(int(max_documents), 1)))

    def entries(held_out: bool):
        for i, text in enumerate(iter_gcide(root, every=every)):
            if (i % heldout_every == heldout_every - 1) == held_out:
                yield text

    if tokenizer is None:
        tokenizer = train_tokenizer(entries(False), vocab_size)
    train = text_data_streamed(entries(False), tokenizer, seq_len, "gcide")
    if total // every < heldout_every:  # too few entries to hold one out: no held-out curve
        warnings.warn(f"gcide: {total // every} entries, fewer than heldout_every={heldout_every}: no held-out "
                      f"split (lower heldout_every or raise max_documents)", stacklevel=2)
        return DatasetSplits(train, None)
    return DatasetSplits(train, text_data_streamed(entries(True), tokenizer, seq_len, "gcide-test"))
