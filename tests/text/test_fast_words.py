"""The numpy word path (fast_words) gives exactly the ids of the rules + Rust tokenizer path."""
import os

import numpy as np
import pandas as pd
import pytest

from ulmfit.text.tokenize import fast_words as F
from ulmfit.text.tokenize import rules as R
from ulmfit.text.data.readers import split_wikitext_articles
from ulmfit.text.tokenize.tokenizer import TextTokenizer
from cli_helpers import DATA

EDGE = ["HELLO World", "Hello,world", "don't stop", "1,000.5 and 3.5x e.g. a.b", "aaaa!!!! ....",
        "ha ha ha ha", "École ÉCOLE", "tab\there\xa0nbsp Word\u2003Em \u3000Ideo", "", "a\x00b",
        "(Hello) [WORLD] {x}", "Ünïcödé wörds’s ’s ’", "x" * 100, "X" * 100 + " y",
        "I'm O'Neil 'quoted' rock'n'roll", "—dash— …", "\x1cHello\x1fWorld", "กัลยาณมิตร ẋy",
        "<br />Broken &amp; fixed #39;s", " @-@ a @,@ b @.@ c", "mixed CASE Word", "A",
        "naïve café résumé " * 3, "ΑΒΓ αβγ Ωmega", "emoji 😀😀😀 ok", "tab\tsep\nnew line  two",
        "a_b c__d _x_", "10,000,000 1.2.3 ,5 5,", "Mr. Smith's dog's", "x" + "é" * 20]


def rust_path(tok, texts):
    """The reference: rules.preprocess_batch, the Rust WordLevel tokenizer, then xxwrep on ids."""
    encs = tok._tk.encode_batch_fast(tok.preprocess(texts), add_special_tokens=False)
    lengths = np.array([len(e.ids) for e in encs], np.int64)
    ids = np.concatenate([np.array(e.ids, np.int32) for e in encs])
    return R.wrep_ids(ids, lengths, *tok._wrep_args()) if tok.rules.wrep else (ids, lengths)


@pytest.fixture(scope="module")
def real():
    d = DATA
    wt = split_wikitext_articles((d / "wikitext-2" / "train.txt").read_text(encoding="utf-8"))[:60]
    imdb = pd.read_csv(d / "imdb" / "test.csv")["text"].astype(str).tolist()[:400]
    trec = pd.read_csv(d / "trec6" / "train.csv")["text"].astype(str).tolist()[:400]
    tok = TextTokenizer.train(wt + imdb + trec + EDGE * 3, min_freq=2)
    return tok, {"wikitext2": wt, "imdb": imdb, "trec6": trec, "edge": EDGE}


@pytest.mark.parametrize("name", ["wikitext2", "imdb", "trec6", "edge"])
def test_same_ids_as_rust_path(real, name):
    tok, texts = real
    ids, lengths = tok.encode_flat(texts[name], workers=1)
    ref_ids, ref_lengths = rust_path(tok, texts[name])
    assert np.array_equal(lengths, ref_lengths)
    assert np.array_equal(ids, ref_ids)
    texts = texts[name]
    assert F.encode_joined(R.join_rules(texts, tok.rules), len(texts), tok._tables(), tok.rules) is not None
    assert name == "edge" or (ids == 0).any()  # unknown words occur


def test_falls_back_when_lower_case_changes_length(real):
    tok, _ = real
    texts = ["İstanbul and Ankara", "Kelvin K sign"]
    assert F.encode_joined(R.join_rules(texts, tok.rules), 2, tok._tables(), tok.rules) is None
    assert tok.encode_flat(texts, workers=1)[0].tolist() == rust_path(tok, texts)[0].tolist()


def test_each_edge_text_alone(real):
    tok, _ = real
    for t in EDGE:
        assert tok.encode_flat([t], workers=1)[0].tolist() == rust_path(tok, [t])[0].tolist(), t


def test_long_and_prefix_sharing_words():
    abc = "abcdefghijklmnopqrstuvwxyz" * 2
    words = ["internationalization", "internationalisation", "abcdefgh", "abcdefghi",
             abc[:32], abc[:33], abc[1:41], "ab", "abc"]  # 32 bytes are keyed, longer via the dict
    tok = TextTokenizer.train([" ".join(words)] * 3, min_freq=1)
    text = " ".join(words + ["abcdefghij", abc[:31], abc[1:42], "internationalizatioN"])
    got = tok.tokenize(text)
    assert got[1:len(words) + 1] == words
    assert got[len(words) + 1:len(words) + 4] == ["xxunk"] * 3
    assert got[-1] == "internationalization"  # mixed case: no marker, just lower-cased
    assert tok.encode(text) == rust_path(tok, [text])[0].tolist()


def test_rules_off_match_too():
    cfg = R.RuleConfig(case=False, lower=False, add_bos=False, add_eos=True, wrep=False)
    tok = TextTokenizer.train(EDGE * 3, min_freq=1, rules=cfg)
    assert tok.encode_flat(EDGE, workers=1)[0].tolist() == rust_path(tok, EDGE)[0].tolist()


def test_two_processes_equal_one(real):
    tok, texts = real
    many = texts["wikitext2"] + texts["imdb"]
    one = tok.encode_flat(many, workers=1)
    two = tok.encode_flat(many, workers=2)
    assert np.array_equal(one[0], two[0]) and np.array_equal(one[1], two[1])


def test_failed_child_slice_is_redone_here():
    parent = os.getpid()

    def fn(texts):
        if os.getpid() != parent:
            raise RuntimeError("child fails")
        return np.array([len(t) for t in texts], np.int32), np.ones(len(texts), np.int64)

    texts = [f"text {i}" for i in range(10)]
    ids, lengths = F.fork_map(fn, texts, 2)
    assert ids.tolist() == [len(t) for t in texts] and lengths.tolist() == [1] * 10


def test_worker_choice():
    small, big = ["a b"] * 10, ["word " * 1000] * 300
    assert F.pick_workers(small, None) == 1
    assert F.pick_workers(big, None) == min(4, len(os.sched_getaffinity(0)))
    assert F.pick_workers(big, 1) == 1 and F.pick_workers(["x"], 8) == 1
