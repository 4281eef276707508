"""Text data: the fortunes parser, category balancing, vectorised packing and the TextData object."""
from __future__ import annotations

import pytest
import torch

from selfsup.data.registry import DATASETS
from selfsup.data.text import (FORTUNE_DIR, TextData, balance_categories, fortunes, parse_fortunes, parse_paragraphs,
                               read_fortune_categories, text_files, token_tensors)
from selfsup.errors import SelfSupError
from selfsup.text.tokenizer import load_tokenizer


def test_parser_splits_on_percent_lines_and_drops_empty_entries():
    data = b"first entry\nline two\n%\n%\n   \n%\nsecond\r\n%\r\nthird 100% sure\n%\n"
    assert parse_fortunes(data) == ["first entry\nline two", "second", "third 100% sure"]


def test_parser_handles_bytes_that_are_not_utf8():
    data = "na\u00efve utf-8\n%\n".encode() + b"caf\xe9 in latin-1\n%\n\xff\xfe odd\n"
    assert parse_fortunes(data) == ["na\u00efve utf-8", "caf\u00e9 in latin-1", "\u00ff\u00fe odd"]


def test_categories_skip_index_files_and_folders(tmp_path):
    (tmp_path / "jokes").write_bytes(b"a\n%\nb\n%\nc\n")
    (tmp_path / "jokes.dat").write_bytes(b"\x00\x01")
    (tmp_path / "jokes.u8").write_bytes(b"x\n%\ny\n")
    (tmp_path / "off").mkdir()
    (tmp_path / "off" / "rude").write_bytes(b"nope\n")
    assert read_fortune_categories(tmp_path) == {"jokes": ["a", "b", "c"]}
    with pytest.raises(SelfSupError, match="apt-get install"):
        read_fortune_categories(tmp_path / "missing")


def test_balance_keeps_big_categories_and_draws_equal_counts():
    by_cat = {"big": [f"b{i}" for i in range(10)], "small": ["s"], "mid": [f"m{i}" for i in range(5)]}
    texts, labels, classes = balance_categories(by_cat, min_entries=5, per_class=4, seed=0)
    assert classes == ["big", "mid"]
    assert labels == [0] * 4 + [1] * 4
    assert all(t.startswith("b") for t in texts[:4]) and all(t.startswith("m") for t in texts[4:])
    assert len(set(texts)) == 8
    assert balance_categories(by_cat, 5, 4, seed=0) == (texts, labels, classes)


def test_token_tensors_pack_exactly():
    out = token_tensors([[5, 6, 7], list(range(8, 18))], seq_len=9)  # pair window W = 9 - 3 = 6
    assert out["input_ids"].tolist() == [[1, 5, 6, 7, 2, 0, 0, 0, 0], [1, 8, 9, 10, 11, 12, 13, 14, 2]]
    assert out["pair_tokens"].tolist() == [[5, 6, 7, 0, 0, 0], [12, 13, 14, 15, 16, 17]]  # the last W subwords
    assert out["pair_word_starts"].tolist() == [[True] * 3 + [False] * 3, [True] * 6]


def test_pair_window_ends_the_document_and_starts_on_a_word():
    ids = [list(range(10, 20))]  # 10 subwords, window W = 6: the last 6 would start at 14, mid-word
    starts = [[True, False, True, False, False, False, True, False, True, False]]  # words at 10, 12, 16, 18
    out = token_tensors(ids, seq_len=9, word_starts=starts)
    assert out["pair_tokens"].tolist() == [[16, 17, 18, 19, 0, 0]]  # the next word start, to the end
    assert out["pair_word_starts"].tolist() == [[True, False, True, False, False, False]]


CORPUS = ["the cat sat on the mat", "a dog barked at a cat", "x", "dogs and cats and mats",
          "nobody expects the inquisition", "cats sit, dogs bark"]


def test_text_data_from_texts(tmp_path):
    data = TextData.from_texts(CORPUS, [0, 1, 0, 1, 0, 1], ["a", "b"], seq_len=16, vocab_size=120, name="tiny")
    assert len(data) == 5  # "x" is one subword: too short for two segments
    assert data.labels.tolist() == [0, 1, 1, 0, 1]
    assert data.texts[2] == "dogs and cats and mats"
    spec = data.spec
    assert (spec.modality, spec.seq_len, spec.num_classes, spec.vocab_size) == ("text", 16, 2, data.vocab_size)
    assert spec.extra["pair_len"] == 13
    batch = data.batch(torch.tensor([0, 2]))
    assert batch["input_ids"].shape == (2, 16) and batch["input_ids"].dtype == torch.int64
    assert torch.equal(batch["attention_mask"], batch["input_ids"] != 0)
    assert batch["pair_tokens"].shape == batch["pair_word_starts"].shape == (2, 13)
    pieces = [data.tokenizer.id_to_token(int(t)) for t in batch["pair_tokens"][1] if t != 0]
    assert [not p.startswith("##") for p in pieces] == batch["pair_word_starts"][1, :len(pieces)].tolist()
    assert data.tokenizer.decode(batch["input_ids"][1].tolist()) == "dogs and cats and mats"
    sub = data.subset(torch.tensor([4, 0]))
    assert sub.texts == [data.texts[4], data.texts[0]] and sub.labels.tolist() == [1, 0]
    assert torch.equal(sub.input_ids, data.input_ids[[4, 0]])
    data.save_to(tmp_path)
    again = TextData.from_texts(CORPUS, tokenizer=load_tokenizer(tmp_path), seq_len=16)
    assert torch.equal(again.input_ids, data.input_ids) and again.labels is None


def test_text_files_folder_with_classes(tmp_path):
    (tmp_path / "pos").mkdir()
    (tmp_path / "neg").mkdir()
    (tmp_path / "pos" / "a.txt").write_text("good great film\n\nlovely happy ending\n")
    (tmp_path / "neg" / "b.txt").write_text("bad awful plot\n%\nboring sad ending\n")
    splits = text_files(tmp_path, seq_len=16, vocab_size=80)
    assert splits.test is None
    assert splits.train.classes == ["neg", "pos"]
    assert splits.train.labels.tolist() == [0, 0, 1, 1]
    assert splits.train.texts == ["bad awful plot", "boring sad ending", "good great film", "lovely happy ending"]
    flat = text_files(tmp_path / "pos" / "a.txt", seq_len=16, vocab_size=80).train
    assert flat.labels is None and len(flat) == 2 and flat.spec.num_classes == 0
    with pytest.raises(SelfSupError, match="no such"):
        text_files(tmp_path / "nothing")


@pytest.mark.skipif(not FORTUNE_DIR.is_dir(), reason="Debian fortunes not installed")
def test_fortunes_dataset_is_registered_and_balanced():
    assert DATASETS.get("fortunes") is fortunes
    data = fortunes(per_class=50, min_entries=400, vocab_size=1000).train
    counts = torch.bincount(data.labels)
    assert len(data.classes) >= 10 and "pratchett" not in data.classes
    assert counts.max() == 50 and counts.min() >= 48  # only 1-subword entries may be dropped
    assert data.input_ids.shape[1] == 64


# --- bad text: skipped and reported, never a traceback ------------------------------------------------
def write_bad_files(folder) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "empty.txt").write_bytes(b"")
    (folder / "blank.txt").write_bytes(b" \n\n\t\n")
    (folder / "random.txt").write_bytes(bytes(torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0)).tolist()))
    (folder / "program").write_bytes(b"\x7fELF\x02\x01\x01\x00" + b"\x00" * 56 + b"\x48\x89\xe5\xc3" * 64)
    (folder / "huge.txt").write_bytes(b"word " * 30_000)  # one 150,000-byte line


def test_bad_files_are_skipped_counted_and_named(tmp_path):
    write_bad_files(tmp_path / "notes")
    (tmp_path / "notes" / "good.txt").write_text("a cat sat on the mat\n\nthe dog barked at it\n")
    (tmp_path / "notes" / "latin.txt").write_bytes(b"caf\xe9 au lait\n\nna\xefve art\n")
    with pytest.warns(UserWarning) as caught:
        splits = text_files(tmp_path / "notes", seq_len=16, vocab_size=80)
    reading = splits.reading
    reasons = {line.split(": ", 1)[0].rsplit("/", 1)[1]: line.split(": ", 1)[1] for line in reading.skipped}
    assert reasons.keys() == {"empty.txt", "blank.txt", "random.txt", "program", "huge.txt"}
    assert reasons["empty.txt"] == reasons["blank.txt"] == "empty"
    assert reasons["random.txt"].startswith("binary") and reasons["program"] == "binary (an executable (ELF)), not text"
    assert "huge line" in reasons["huge.txt"] and "149,999 characters" in reasons["huge.txt"]  # stripped
    assert (reading.files, reading.documents, len(splits.train)) == (2, 4, 4)
    assert "caf\u00e9 au lait" in splits.train.texts  # invalid UTF-8 read as Latin-1, and said so
    assert any("latin.txt: not valid UTF-8" in note for note in reading.notes)
    assert reading.as_record()["skipped"] == 5 and "skipped 5 file(s)" in reading.summary
    assert any("skipped 5 file(s)" in str(w.message) for w in caught)


@pytest.mark.parametrize("name", ["empty.txt", "random.txt", "program", "huge.txt"])
def test_a_single_bad_file_gets_a_clear_error(tmp_path, name):
    write_bad_files(tmp_path)
    with pytest.warns(UserWarning), pytest.raises(SelfSupError, match="no text documents .* skipped"):
        text_files(tmp_path / name, seq_len=16)


def test_a_folder_of_only_bad_files_says_what_was_skipped(tmp_path):
    write_bad_files(tmp_path / "pos")
    with pytest.warns(UserWarning), pytest.raises(SelfSupError, match="5 file.s. skipped"):
        text_files(tmp_path, seq_len=16)


def test_one_bad_byte_changes_only_its_own_paragraph():
    data = "na\u00efve\n\n".encode() + b"caf\xe9\n"
    assert parse_paragraphs(data) == ["na\u00efve", "caf\u00e9"]


def test_fortune_folder_skips_binary_and_empty_files(tmp_path):
    (tmp_path / "jokes").write_bytes(b"a\n%\nb\n")
    write_bad_files(tmp_path / "x")
    for f in (tmp_path / "x").iterdir():
        f.rename(tmp_path / f.name.replace(".txt", ""))
    with pytest.warns(UserWarning, match="skipped 5 file"):
        assert read_fortune_categories(tmp_path) == {"jokes": ["a", "b"]}
