"""A WordPiece tokenizer trained on the corpus with Hugging Face `tokenizers`, saved in the run folder.

The special tokens get fixed ids, so methods can rely on them without the tokenizer object:
[PAD]=0, [CLS]=1, [SEP]=2, [MASK]=3, [UNK]=4; every id >= NUM_SPECIAL is an ordinary subword.
`tokenizers` is imported inside the functions, so `import selfsup` stays cheap.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from selfsup.errors import SelfSupError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

SPECIAL_TOKENS = ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]
PAD_ID, CLS_ID, SEP_ID, MASK_ID, UNK_ID = range(len(SPECIAL_TOKENS))
NUM_SPECIAL = len(SPECIAL_TOKENS)
TOKENIZER_FILE = "tokenizer.json"


def train_tokenizer(texts: Iterable[str], vocab_size: int = 4000, lowercase: bool = True) -> "Tokenizer":
    """Train a BERT-style WordPiece tokenizer (whitespace+punctuation pre-split, `##` continuations).

    BERT used a 30k WordPiece vocabulary; 4,000 is scaled down for a ~2 MB corpus and a tiny model.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    steps = [normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else [])
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS),
                                        show_progress=False)
    tokenizer.train_from_iterator(texts, trainer=trainer)  # any iterable: a streamed corpus is never a list
    canonical_ids(tokenizer)
    check_special_ids(tokenizer)
    return tokenizer


def word_tokenizer(texts: Iterable[str], lowercase: bool = True) -> "Tokenizer":
    """A WordPiece tokenizer whose vocabulary is every word of `texts`, whole, plus every character alone and
    as a `##` continuation (so a word it never saw is spelled out), with `train_tokenizer`'s normalisation and
    pre-split. Deterministic: the same texts give the same ids in every process, unlike the trained
    vocabulary, whose intermediate subwords depend on how merge ties fall (hash order) on small corpora.
    For short captions (image-caption pairs), where a word-level vocabulary is small.
    """
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers

    normalizer = normalizers.Sequence([normalizers.NFKC()] + ([normalizers.Lowercase()] if lowercase else []))
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    words: set[str] = set()
    for text in texts:
        words.update(w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text)))
    chars = {c for w in words for c in w}
    ordinary = sorted((words | chars | {"##" + c for c in chars}) - set(SPECIAL_TOKENS))
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + ordinary)}
    tokenizer = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##"))
    tokenizer.normalizer, tokenizer.pre_tokenizer = normalizer, pre_tokenizer
    tokenizer.decoder = decoders.WordPiece(prefix="##")
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))  # already in the vocabulary: marks them special (decoding skips them)
    check_special_ids(tokenizer)
    return tokenizer


def canonical_ids(tokenizer: "Tokenizer") -> None:
    """Renumber the learned vocabulary: specials first, then the other subwords sorted as strings.

    The trainer's ids depend on hash order, so retraining on the same corpus gave the same subwords with
    other ids; WordPiece splits words by longest match over the vocabulary set, so renumbering changes
    nothing but makes the ids reproducible (a run's weights then match a retrained tokenizer too).
    """
    from tokenizers import models

    learned = tokenizer.get_vocab()
    ordinary = sorted(t for t in learned if t not in SPECIAL_TOKENS)
    vocab = {token: i for i, token in enumerate(SPECIAL_TOKENS + ordinary)}
    tokenizer.model = models.WordPiece(vocab, unk_token="[UNK]", continuing_subword_prefix="##")


def check_special_ids(tokenizer: "Tokenizer") -> None:
    """Methods hard-wire the special ids, so a tokenizer that numbers them differently is refused."""
    for expected, token in enumerate(SPECIAL_TOKENS):
        if tokenizer.token_to_id(token) != expected:
            raise SelfSupError(f"tokenizer gives {token} id {tokenizer.token_to_id(token)}, expected {expected}; "
                               f"train it with selfsup.text.tokenizer.train_tokenizer")


def encode(tokenizer: "Tokenizer", texts: list[str]) -> list[list[int]]:
    """Subword ids of each text, without special tokens (the data adds [CLS]/[SEP] itself)."""
    return [e.ids for e in tokenizer.encode_batch(texts, add_special_tokens=False)]


def encode_with_word_starts(tokenizer: "Tokenizer", texts: list[str]) -> tuple[list[list[int]], list[list[bool]]]:
    """Subword ids of each text (as `encode`) and, per subword, whether it starts a whitespace-separated word.

    A segment may start only where a word starts: never on a `##` continuation, nor on punctuation glued
    to the word before it ("end" "." in "end."), which the pre-tokenizer splits off as a word of its own.
    """
    encodings = tokenizer.encode_batch(texts, add_special_tokens=False)
    starts = [[begin == 0 or text[begin - 1].isspace() for begin, _ in e.offsets] for text, e in zip(texts, encodings)]
    return [e.ids for e in encodings], starts


def decode(tokenizer: "Tokenizer", ids: Iterable[int]) -> str:
    """Text from ids, dropping special tokens."""
    return tokenizer.decode([int(i) for i in ids], skip_special_tokens=True)


def save_tokenizer(tokenizer: "Tokenizer", run_dir: str | Path) -> Path:
    path = Path(run_dir) / TOKENIZER_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(path))
    return path


def load_tokenizer(path: str | Path) -> "Tokenizer":
    """Read `tokenizer.json` from a run folder (or the file itself)."""
    from tokenizers import Tokenizer

    path = Path(path)
    if path.is_dir():
        path = path / TOKENIZER_FILE
    if not path.exists():
        raise SelfSupError(f"no tokenizer at {path}; text runs save {TOKENIZER_FILE} in their run folder")
    tokenizer = Tokenizer.from_file(str(path))
    check_special_ids(tokenizer)
    return tokenizer


def tokenizer_from_json(text: str) -> "Tokenizer":
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_str(text)
    check_special_ids(tokenizer)
    return tokenizer


def hf_tokenizer(tokenizer: "Tokenizer", seq_len: int):
    """The run's tokenizer as a `transformers.PreTrainedTokenizerFast` that builds the encoder's input as the
    run's data does: "[CLS] subwords [SEP]" (pairs "[CLS] A [SEP] B [SEP]", B with token type 1), truncated
    and padded with [PAD] on the right to `seq_len`. `save_pretrained(dir)` writes what
    `transformers.AutoTokenizer.from_pretrained(dir)` loads."""
    from tokenizers import Tokenizer, processors
    from transformers import PreTrainedTokenizerFast

    wrapped = Tokenizer.from_str(tokenizer.to_str())  # a copy: the run's own tokenizer adds no specials
    wrapped.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", CLS_ID), ("[SEP]", SEP_ID)])
    return PreTrainedTokenizerFast(tokenizer_object=wrapped, model_max_length=seq_len, padding_side="right",
                                   truncation_side="right", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", unk_token="[UNK]")
