"""TextTokenizer: exact tokens, round trip, vocab thresholds, save/load, subword, slow WikiText."""
import json

import pytest

from cli_helpers import DATA
from ulmfit.errors import UlmfitError
from ulmfit.text.tokenize.special import SPECIAL_TOKENS
from ulmfit.text.tokenize.tokenizer import TextTokenizer

CORPUS = ["The cat sat on the mat .", "The dog sat on the log .", "the cat and the dog"] * 3


@pytest.fixture(scope="module")
def tok():
    return TextTokenizer.train(CORPUS, min_freq=3)


def test_special_ids(tok):
    assert tok.vocab[:9] == SPECIAL_TOKENS
    assert (tok.unk_id, tok.pad_id, tok.bos_id, tok.eos_id) == (0, 1, 2, 3)


def test_exact_tokens(tok):
    toks = tok.tokenize("The CAT sat on the zebra")
    assert toks == ["xxbos", "xxmaj", "the", "xxup", "cat", "sat", "on", "the", "xxunk"]


def test_wrep_in_tokenizer(tok):
    assert tok.tokenize("the the the cat") == ["xxbos", "xxwrep", "xxunk", "the", "cat"]


def test_round_trip(tok):
    text = "The cat sat on the mat ."
    assert tok.decode(tok.encode(text)) == text
    assert tok.decode(tok.encode("THE DOG")) == "THE DOG"


def test_vocab_thresholds():
    texts = ["a a a b b c"]
    assert set(TextTokenizer.train(texts, min_freq=2).vocab[9:]) == {"a", "b"}
    assert TextTokenizer.train(texts, min_freq=1).vocab[9:] == ["a", "b", "c"]
    assert TextTokenizer.train(texts, min_freq=1, max_vocab=10).vocab[9:] == ["a"]
    with pytest.raises(UlmfitError):
        TextTokenizer.train(texts, min_freq=5)


def test_save_load_json(tok, tmp_path):
    tok.save(tmp_path)
    cfg = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert cfg["kind"] == "word" and cfg["rules"]["rep"] is True
    json.loads((tmp_path / "tokenizer.json").read_text())
    t2 = TextTokenizer.load(tmp_path)
    assert t2.vocab == tok.vocab and t2.hash == tok.hash
    assert t2.encode_batch(CORPUS) == tok.encode_batch(CORPUS)
    with pytest.raises(UlmfitError, match="not found"):
        TextTokenizer.load(tmp_path / "nope")


def test_from_vocab_and_numpy():
    t = TextTokenizer.from_vocab(SPECIAL_TOKENS + ["hello", "world"])
    assert t.encode("Hello world foo") == [2, 8, 9, 10, 0]
    arrs = t.encode_batch(["hello", "world world"], as_numpy=True)
    assert [a.tolist() for a in arrs] == [[2, 9], [2, 10, 10]]
    with pytest.raises(UlmfitError, match="special token"):
        TextTokenizer.from_vocab(["hello"] + SPECIAL_TOKENS)


@pytest.mark.parametrize("kind", ["unigram", "bpe"])
def test_subword(kind):
    texts = ["Hello world, this is a small corpus of words.", "Another Line with Words"] * 20
    t = TextTokenizer.train(texts, kind=kind, vocab_size=120)
    assert t.vocab[:9] == SPECIAL_TOKENS
    ids = t.encode("Hello world")
    assert ids[:2] == [2, 8]
    assert t.decode(ids) == "Hello world"


@pytest.mark.slow
def test_wikitext2_train():
    from ulmfit.text.data.readers import split_wikitext_articles
    f = DATA / "wikitext-2" / "train.txt"
    arts = split_wikitext_articles(f.read_text(encoding="utf-8"))
    assert len(arts) == 629
    t = TextTokenizer.train(arts, min_freq=3)
    assert 25000 < len(t) < 33000
    ids, lens = t.encode_flat(arts)
    assert 2_200_000 < len(ids) < 2_600_000 and (ids[lens.cumsum()[:-1]] == 2).all()
