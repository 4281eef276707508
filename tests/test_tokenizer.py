"""The WordPiece tokenizer: fixed special ids, round trips, saving in and loading from a run folder."""
from __future__ import annotations

import pytest

from selfsup.errors import SelfSupError
from selfsup.text.tokenizer import (SPECIAL_TOKENS, check_special_ids, decode, encode, load_tokenizer, save_tokenizer,
                                    train_tokenizer)

CORPUS = ["The cat sat on the mat.", "A dog barked at the cat!", "Cats and dogs, dogs and cats.",
          "Nobody expects the Spanish inquisition."] * 5


def test_special_tokens_have_fixed_ids():
    tok = train_tokenizer(CORPUS, vocab_size=200)
    assert [tok.token_to_id(t) for t in SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    assert SPECIAL_TOKENS == ["[PAD]", "[CLS]", "[SEP]", "[MASK]", "[UNK]"]


def test_encode_has_no_specials_and_decodes_back_lowercased():
    tok = train_tokenizer(CORPUS, vocab_size=200)
    ids = encode(tok, ["The cat sat on the mat."])[0]
    assert all(i >= len(SPECIAL_TOKENS) for i in ids)
    assert decode(tok, ids) == "the cat sat on the mat."
    assert decode(tok, [1] + ids + [2, 0, 0]) == "the cat sat on the mat."  # specials dropped


def test_unknown_characters_become_unk():
    tok = train_tokenizer(CORPUS, vocab_size=200)
    assert encode(tok, ["\u4e2d"])[0] == [4]


def test_save_and_load_from_run_folder(tmp_path):
    tok = train_tokenizer(CORPUS, vocab_size=200)
    path = save_tokenizer(tok, tmp_path / "run")
    assert path == tmp_path / "run" / "tokenizer.json"
    again = load_tokenizer(tmp_path / "run")
    assert encode(again, CORPUS[:4]) == encode(tok, CORPUS[:4])
    with pytest.raises(SelfSupError, match="no tokenizer"):
        load_tokenizer(tmp_path / "elsewhere")


def test_tokenizer_with_other_special_ids_is_refused():
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.train_from_iterator(CORPUS, trainers.WordPieceTrainer(vocab_size=100, special_tokens=["[UNK]", "[PAD]"]))
    with pytest.raises(SelfSupError, match=r"\[PAD\]"):
        check_special_ids(tok)


def test_ids_are_a_function_of_the_learned_subwords():
    """The trainer numbers subwords in hash order; ours are renumbered: specials, then sorted strings."""
    tok = train_tokenizer(CORPUS, vocab_size=200)
    by_id = sorted(tok.get_vocab().items(), key=lambda item: item[1])
    tokens = [t for t, _ in by_id]
    assert [i for _, i in by_id] == list(range(len(tokens)))
    assert tokens[:5] == SPECIAL_TOKENS and tokens[5:] == sorted(tokens[5:])
    assert decode(tok, encode(tok, ["Cats and dogs."])[0]) == "cats and dogs."
