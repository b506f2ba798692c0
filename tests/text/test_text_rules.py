"""Each pre-processing rule on hand-written strings, reference and fast (numpy) paths."""
import numpy as np
import pytest

from ulmfit.text.tokenize import rules as R


def test_fix_html():
    assert R.fix_html("#39;bli#146;") == "'bli'"
    assert R.fix_html("Sarah amp; Duck...") == "Sarah & Duck …"
    assert R.fix_html("a<br />b") == "a\nb"
    assert R.fix_html("x @-@ y @,@ z @.@ w <unk>") == "x-y,z.w xxunk"
    assert R.fix_html("&lt;tag&gt;") == "<tag>"


def test_replace_rep():
    assert R.replace_rep("aa") == "aa"
    assert R.replace_rep("aaaa") == " xxrep 4 a "
    assert R.replace_rep("1000") == "1 xxrep 3 0 "


def test_replace_wrep():
    assert R.replace_wrep("ah ah") == "ah ah"
    assert R.replace_wrep("ah ah ah") == " xxwrep 3 ah "
    assert R.replace_wrep("ah ah ah ah.") == " xxwrep 4 ah ."


def test_case_rules():
    assert R.replace_all_caps("I'M SHOUTING") == "xxup i'm xxup shouting"
    assert R.replace_maj("Jeremy Howard") == "xxmaj jeremy xxmaj howard"
    assert R.replace_maj("I am") == "i am"  # single letters: no marker


@pytest.mark.parametrize("text,expected", [
    ("Hello World", "xxbos xxmaj hello xxmaj world"),
    ("THE END is near", "xxbos xxup the xxup end is near"),
    ("I'm McDonald", "xxbos xxmaj i'm mcdonald"),
    ("sooo good", "xxbos s xxrep 3 o  good"),
    ("A1 B", "xxbos xxup a1 b"),
    ("École", "xxbos école"),
])
def test_pipeline_reference_and_fast(text, expected):
    cfg = R.RuleConfig(wrep=False)
    assert R.apply_rules(text, cfg) == expected
    assert R.preprocess_batch([text], cfg) == [expected]


def test_fast_batch_matches_reference_on_mixed_texts():
    texts = ["Hello,  WORLD!!! 2000", "", "Mixed Case TEXT here. zzzz Yes", "x\ty\nZed"]
    cfg = R.RuleConfig(wrep=False)
    assert R.preprocess_batch(texts, cfg) == [R.apply_rules(t, cfg) for t in texts]


def test_split_words():
    assert R.split_words("don't 1,000 3.5 a/b (x) 's") == [
        "don't", "1,000", "3.5", "a", "/", "b", "(", "x", ")", "'s"]


def test_join_fields():
    assert R.join_fields(["a", "b"]) == "xxfld 1 a xxfld 2 b"
    assert R.join_fields(["a"]) == "a"


def test_wrep_ids():
    ids = np.array([2, 10, 10, 10, 10, 11, 2, 10, 10, 10, 0, 0, 0])
    lengths = np.array([6, 7])
    is_word = np.ones(20, bool)
    is_word[0] = False
    count_ids = np.array([0, 0, 0, 13, 14])
    out, lens = R.wrep_ids(ids, lengths, is_word, count_ids, 6)
    assert out.tolist() == [2, 6, 14, 10, 11, 2, 6, 13, 10, 0, 0, 0]
    assert lens.tolist() == [5, 7]
