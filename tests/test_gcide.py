"""The GCIDE corpus source (Debian's dict-gcide): dictd index and dictzip entries, cleaning, streaming."""
import gzip

import pytest
import torch

from selfsup.data.text import (TextData, clean_gcide_entry, dictd_number, gcide, gcide_entries_index, iter_gcide,
                               text_data_streamed)
from selfsup.errors import SelfSupError
from selfsup.text.tokenizer import train_tokenizer

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

ENTRIES = [
    b"00-database-info\n   This file was converted from the original database.\n",
    b'Absolution \\Ab`so*lu"tion\\, n. [F. absolution.]\n   1. An absolving, or setting free from guilt;\n'
    b"      forgiveness of an offense. --Froude.\n      [1913 Webster]\n\n",
    b"Serpolet \\Ser\"po*let\\, n. [F.] (Bot.)\n   Wild thyme. See {Thyme}.\n   [1913 Webster]\n\n",
    b"Thyme \\Thyme\\, n.\n   Any plant of the labiate genus {Thymus}. [PJC]\n\n",
] + [f"Word{i} \\Word{i}\\, n.\n   The {i}th made-up word of a test.\n   [WordNet 1.5]\n\n".encode()
     for i in range(12)]


def b64(n: int) -> str:
    digits = ""
    while True:
        digits = B64[n % 64] + digits
        n //= 64
        if not n:
            return digits


def fake_gcide(root, entries=ENTRIES):
    """gcide.dict.dz (plain gzip: dictzip is gzip-compatible) and gcide.index as dictd writes them."""
    root.mkdir(parents=True, exist_ok=True)
    offsets, position = [], 0
    for e in entries:
        offsets.append((position, len(e)))
        position += len(e)
    (root / "gcide.dict.dz").write_bytes(gzip.compress(b"".join(entries)))
    heads = [e.split(b"\n")[0].split(b" ")[0].decode() for e in entries]
    lines = [f"{h}\t{b64(o)}\t{b64(n)}" for h, (o, n) in zip(heads, offsets)]
    lines.append(f"absolution\t{b64(offsets[1][0])}\t{b64(offsets[1][1])}")  # a second headword, same entry
    (root / "gcide.index").write_text("\n".join(sorted(lines)) + "\n")
    return root


def test_dictd_numbers_are_base64_most_significant_first():
    assert [dictd_number(s) for s in ["A", "B", "z", "BA", "Fz", "5I"]] == [0, 1, 51, 64, 5 * 64 + 51, 57 * 64 + 8]


def test_entries_are_cleaned_to_plain_prose():
    raw = ENTRIES[1]
    assert clean_gcide_entry(raw) == ("Absolution, n. [F. absolution.] 1. An absolving, or setting free from guilt; "
                                      "forgiveness of an offense. --Froude.")
    assert clean_gcide_entry(ENTRIES[2]) == "Serpolet, n. [F.] (Bot.) Wild thyme. See Thyme."
    assert clean_gcide_entry(b"Caf\\xe9\\, n.\n   A caf['e] [=a]nd [e^] inline [1913 Webster] [Obs.]") == \
        "Caf, n. A cafe and e inline [Obs.]"


def test_index_counts_shared_entries_once_and_skips_the_database_records(tmp_path):
    root = fake_gcide(tmp_path / "dictd")
    spans = gcide_entries_index(root / "gcide.index")
    assert len(spans) == len(ENTRIES) - 1 and spans == sorted(spans)
    texts = list(iter_gcide(root))
    assert texts[0].startswith("Absolution, n.") and texts[2] == "Thyme, n. Any plant of the labiate genus Thymus."
    assert len(texts) == len(ENTRIES) - 1 and not any("database" in t for t in texts)
    assert list(iter_gcide(root, every=3, skip=1)) == texts[1::3]


def test_splits_hold_out_every_kth_entry_and_share_one_tokenizer(tmp_path):
    root = fake_gcide(tmp_path / "dictd")
    splits = gcide(root, seq_len=16, vocab_size=80, heldout_every=5)
    texts = list(iter_gcide(root))
    held = [t for i, t in enumerate(texts) if i % 5 == 4]
    assert len(splits.test) == len(held) and len(splits.train) == len(texts) - len(held)
    assert splits.train.labels is None and splits.test.tokenizer_json == splits.train.tokenizer_json
    reference = TextData.from_texts(held, tokenizer=splits.train.tokenizer, seq_len=16)
    assert torch.equal(splits.test.input_ids, reference.input_ids)


def test_streamed_tokenization_in_chunks_equals_tokenizing_at_once():
    texts = [clean_gcide_entry(e) for e in ENTRIES[1:]]
    tokenizer = train_tokenizer(iter(texts), 80)  # trained from a generator: the corpus is never a list
    streamed = text_data_streamed(iter(texts), tokenizer, 16, "gcide", chunk=4)
    whole = TextData.from_texts(texts, tokenizer=tokenizer, seq_len=16)
    for key in ("input_ids", "pair_tokens", "pair_word_starts"):
        assert torch.equal(getattr(streamed, key), getattr(whole, key))


def test_missing_package_names_it(tmp_path):
    with pytest.raises(SelfSupError, match="apt-get install dict-gcide"):
        gcide(tmp_path / "nothing-here")


def test_corrupt_dictionary_is_a_clear_error(tmp_path):
    root = fake_gcide(tmp_path / "dictd")
    (root / "gcide.dict.dz").write_bytes(b"not gzip at all" * 10)
    with pytest.raises(SelfSupError, match="reinstall the dict-gcide"):
        list(iter_gcide(root))


def test_pretraining_on_gcide_logs_the_heldout_curve(tmp_path, monkeypatch):
    """`selfsup.pretrain("mlm", data="gcide")`: the corpus's own test split feeds the held-out curve."""
    import selfsup
    import selfsup.data.text as text
    from selfsup.runs import RunFolder

    monkeypatch.setattr(text, "GCIDE_DIR", fake_gcide(tmp_path / "dictd", ENTRIES * 14))  # 210 entries, 2 held out
    from conftest import TINY_OPTIONS
    result = selfsup.pretrain("mlm", data="gcide", epochs=2, batch_size=16, run_dir=tmp_path / "run",
                              options=TINY_OPTIONS["mlm"], train={"knn_every": 0, "progress_bar": False})
    rows = [r for r in RunFolder(result.run_dir).read_metrics() if r.get("heldout/perplexity")]
    assert len(rows) == 2 and float(rows[-1]["heldout/perplexity"]) > 1
    assert (result.run_dir / "tokenizer.json").exists()


def test_a_corpus_too_small_to_hold_out_gives_no_test_split_and_says_so(tmp_path):
    root = fake_gcide(tmp_path / "dictd")
    with pytest.warns(UserWarning, match="no held-out split"):
        splits = gcide(root, seq_len=16, vocab_size=80)  # 15 entries, heldout_every 100
    assert splits.test is None and len(splits.train) == len(ENTRIES) - 1
