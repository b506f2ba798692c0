"""The word vocabulary counted in numpy (word_counts) is the Rust WordLevelTrainer's, entry for entry."""
import numpy as np
import pandas as pd
import pytest

from ulmfit.text.tokenize import fast_words as F
from ulmfit.text.tokenize import rules as R
from ulmfit.text.tokenize import word_counts as W
from ulmfit.text.data.readers import split_wikitext_articles
from ulmfit.text.tokenize.special import SPECIAL_TOKENS
from ulmfit.text.tokenize.tokenizer import TextTokenizer, _word_pre_tokenizer, rust_word_itos
from cli_helpers import DATA

LONG = "abcdefghijklmnopqrstuvwxyz" + "abcdefghijklmn"  # 40 bytes: counted by string
FIXTURE = [
    "HELLO World, Hello world! THE END. The the the the end", "École ÉCOLE école naïve café résumé Ünïcödé",
    "aaaa!!!! .... cooool ha ha ha ha haaa", "<br />Broken &amp; fixed #39;s &quot;quoted&quot; &lt;tag&gt; &eacute;t&eacute;",
    "don't stop can’t won't O'Neil rock'n'roll 'tis ’s", "1,000.5 and 3.5x e.g. a.b 10,000,000 1.2.3 ,5 5,",
    " @-@ a @,@ b @.@ c <unk> xxbos xxmaj xxunk", "tab\there\xa0nbsp Word\u2003Em \u3000Ideo a\x00b \x1cX\x1fY",
    "ΑΒΓ αβγ Ωmega 😀😀😀 ok กัลยาณมิตร ẋy —dash— …", "internationalization " * 3 + LONG + " " + "é" * 20,
    "mixed CASE Word A I a_b c__d _x_ 42 42 42", "Mr. Smith's dog's SMITH'S Dog's",
]
ODD = ["İstanbul and Ankara", "ΟΔΥΣΣΕΥΣ went home ΑΣ"]  # lower-casing changes UTF-8 length / final sigma


@pytest.fixture(scope="module")
def wikitext():
    return split_wikitext_articles((DATA / "wikitext-2" / "train.txt").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def trec():
    return pd.read_csv(DATA / "trec6" / "train.csv")["text"].astype(str).tolist()


def fast_itos(texts, min_freq, max_vocab, cfg=None, **kw):
    counts = W.count_words(texts, cfg or R.RuleConfig(), _word_pre_tokenizer(), **kw)
    return W.vocab_from_counts(counts, min_freq, max_vocab)


def tie_cut(texts, min_freq):
    """A max_vocab whose last entry has the count of the first word left out."""
    counts = W.count_words(texts, R.RuleConfig(), _word_pre_tokenizer())
    full = W.vocab_from_counts(counts, min_freq, 10 ** 6)
    k = next(k for k in range(len(full) * 2 // 3, len(full) - 1) if counts[full[k]] == counts[full[k + 1]])
    return k + 1


def test_train_gives_the_trainers_vocab_on_wikitext2(wikitext):
    tok = TextTokenizer.train(wikitext, min_freq=3)
    assert tok.itos[:9] == SPECIAL_TOKENS
    assert tok.itos == rust_word_itos(wikitext, 3, 60000, R.RuleConfig())
    assert len(tok) > 20000


@pytest.mark.parametrize("min_freq", [1, 2])
def test_wikitext2_articles_tie_cut(wikitext, min_freq):
    texts = wikitext[:120]
    max_vocab = tie_cut(texts, min_freq)
    got = fast_itos(texts, min_freq, max_vocab)
    assert got == rust_word_itos(texts, min_freq, max_vocab, R.RuleConfig())
    assert len(got) == max_vocab


def test_trec6(trec):
    cfg = R.RuleConfig()
    for min_freq, max_vocab in [(1, 60000), (3, 60000), (2, tie_cut(trec, 2)), (1, tie_cut(trec, 1))]:
        assert fast_itos(trec, min_freq, max_vocab) == rust_word_itos(trec, min_freq, max_vocab, cfg), (min_freq, max_vocab)


@pytest.mark.parametrize("cfg", [R.RuleConfig(), R.RuleConfig(case=False, lower=False, add_bos=False, add_eos=True),
                                 R.RuleConfig(fix_html=False, rep=False, wrep=False)])
def test_fixture_counts_and_vocab(cfg):
    texts = FIXTURE * 2 + FIXTURE[::3]
    counts = W.count_words(texts, cfg, _word_pre_tokenizer(), workers=1)
    assert counts == W.rust_counts(texts, cfg, _word_pre_tokenizer())
    assert not set(SPECIAL_TOKENS) & counts.keys()
    for min_freq, max_vocab in [(1, 60000), (2, 60000), (1, 30), (3, 12)]:
        assert W.vocab_from_counts(counts, min_freq, max_vocab) == rust_word_itos(texts, min_freq, max_vocab, cfg)


def test_fixture_has_what_it_should():
    counts = W.count_words(FIXTURE, R.RuleConfig(), _word_pre_tokenizer(), workers=1)
    for w in ["école", "naïve", "don't", "can’t", "’s", "3.5", "1.2.3", "4", "😀", "&", "'", "é" * 20, LONG]:
        assert counts[w] >= 1, w
    assert counts["the"] == 5 and counts["internationalization"] == 3 and counts["xxrep"] == 0


def test_pieces_the_numpy_pass_cannot_take_are_counted_by_rust():
    cfg = R.RuleConfig()
    for t in ODD:
        assert not W.WordTally(F.WordSplitter(_word_pre_tokenizer()), True).add(R.join_rules([t], cfg))
    texts = FIXTURE + ODD * 2
    counts = W.count_words(texts, cfg, _word_pre_tokenizer(), workers=1)
    assert counts["ας"] == 2 and counts["οδυσσευς"] == 2
    assert W.vocab_from_counts(counts, 1, 60000) == rust_word_itos(texts, 1, 60000, cfg)
    assert TextTokenizer.train(texts, min_freq=2).itos == rust_word_itos(texts, 2, 60000, cfg)


def test_a_hash_collision_falls_back(monkeypatch):
    real = F.word_keys
    monkeypatch.setattr(F, "word_keys", lambda buf, s, n: (real(buf, s, n)[0], np.zeros(len(s), np.uint64)))
    texts = FIXTURE * 2
    tally = W.WordTally(F.WordSplitter(_word_pre_tokenizer()), True)
    assert tally.add(R.join_rules(texts, R.RuleConfig()))
    assert tally.counts() is None  # "internationalization" and "ünïcödé" share the hash
    counts = W.count_words(texts, R.RuleConfig(), _word_pre_tokenizer(), workers=1)
    assert counts == W.rust_counts(texts, R.RuleConfig(), _word_pre_tokenizer())


def test_processes_batches_and_streams_agree(trec, monkeypatch):
    texts = trec[:3000] + FIXTURE
    one = W.count_words(texts, R.RuleConfig(), _word_pre_tokenizer(), workers=1)
    assert W.count_words(texts, R.RuleConfig(), _word_pre_tokenizer(), workers=2) == one
    monkeypatch.setattr(W, "BATCH_CHARS", 10_000)
    monkeypatch.setattr(F, "PIECE_CHARS", 3_000)
    assert W.count_words(iter(texts), R.RuleConfig(), _word_pre_tokenizer(), workers=1) == one
    assert W.count_words((t for t in texts), R.RuleConfig(), _word_pre_tokenizer(), workers=2) == one


def test_odd_settings_go_to_the_trainer(trec):
    assert W.fast_path_applies(3, 60000) and W.fast_path_applies(0, 9) and W.fast_path_applies(np.int64(2), 100)
    for bad in [(3, 8), (-1, 100), (2.0, 100), (True, 100), (3, 10 ** 20)]:
        assert not W.fast_path_applies(*bad)
    assert TextTokenizer.train(trec[:500], min_freq=0, max_vocab=9 + 50).itos == rust_word_itos(
        trec[:500], 0, 59, R.RuleConfig())


def test_no_word_reaches_min_freq_or_no_texts():
    from ulmfit.errors import UlmfitError
    for texts in ([], ["a b c"]):
        with pytest.raises(UlmfitError, match="no word reached"):
            TextTokenizer.train(texts, min_freq=2)


def test_byte_class_arithmetic_matches_the_definitions():
    def cls(i):
        ch = chr(i)
        if i >= 128:
            return 2  # a byte of a multi-byte character: classified per character later
        return 0 if R._SPACE[i] or ch.isspace() else 1 if ch.isalnum() or ch == "_" else 2
    b = np.arange(256, dtype=np.uint8)
    assert F._byte_classes(b).tolist() == [cls(i) for i in range(256)]
    assert F._lower_bytes(b).tolist() == [ord(chr(i).lower()) if i < 128 else i for i in range(256)]


def test_encode_in_pieces_equals_one_piece(wikitext, monkeypatch):
    tok = TextTokenizer.train(wikitext[:40] + FIXTURE + ODD, min_freq=2)
    texts = wikitext[40:60] + FIXTURE + ODD + wikitext[60:70]
    whole = tok.encode_flat(texts, workers=1)
    monkeypatch.setattr(F, "PIECE_CHARS", 20_000)
    assert len(F.piece_bounds(texts)) > 5
    pieces = tok.encode_flat(texts, workers=1)
    assert np.array_equal(whole[0], pieces[0]) and np.array_equal(whole[1], pieces[1])


def test_final_sigma_is_encoded_as_rust_does():
    texts = ODD + ["ΣΟΦΙΑ Σ ΟΔΟΣ, οδός"]
    tok = TextTokenizer.train(texts * 2, min_freq=1)
    encs = tok._tk.encode_batch_fast(tok.preprocess(texts), add_special_tokens=False)
    ref = R.wrep_ids(np.concatenate([np.array(e.ids, np.int32) for e in encs]),
                     np.array([len(e.ids) for e in encs], np.int64), *tok._wrep_args())
    got = tok.encode_flat(texts, workers=1)
    assert got[0].tolist() == ref[0].tolist() and "οδοσ" not in tok.stoi and "οδος" in tok.stoi


def test_a_lone_surrogate_fails_as_with_the_trainer():
    texts = ["abc \ud800 def"] * 3
    with pytest.raises(UnicodeEncodeError):
        rust_word_itos(texts, 1, 100, R.RuleConfig())
    with pytest.raises(UnicodeEncodeError):
        TextTokenizer.train(texts, min_freq=1)
