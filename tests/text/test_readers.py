"""Readers: every format on small files written here, aclImdb layout, cache, bad input."""
import json
import logging

import pytest

from ulmfit.errors import UlmfitError
from ulmfit.text.data.cache import TokenCache, file_hash
from ulmfit.text.data.readers import load_classification, load_corpus, read_lines, read_texts
from ulmfit.text.tokenize.tokenizer import TextTokenizer

ROWS = [("good movie", "pos"), ("bad movie", "neg"), ("great film", "pos"), ("awful", "neg")] * 5


def _csv(p, rows=ROWS, sep=","):
    p.write_text("text" + sep + "label\n" + "".join(f"{t}{sep}{l}\n" for t, l in rows))
    return p


@pytest.mark.parametrize("fmt", ["csv", "tsv", "jsonl", "parquet", "dataset"])
def test_table_formats(tmp_path, fmt):
    import datasets
    if fmt == "csv":
        p = _csv(tmp_path / "d.csv")
    elif fmt == "tsv":
        p = _csv(tmp_path / "d.tsv", sep="\t")
    elif fmt == "jsonl":
        p = tmp_path / "d.jsonl"
        p.write_text("".join(json.dumps({"text": t, "label": l}) + "\n" for t, l in ROWS))
    else:
        ds = datasets.Dataset.from_dict({"text": [r[0] for r in ROWS], "label": [r[1] for r in ROWS]})
        p = tmp_path / ("d.parquet" if fmt == "parquet" else "ds")
        ds.to_parquet(str(p)) if fmt == "parquet" else ds.save_to_disk(str(p))
    texts, labels = read_texts(p, "text", "label")
    assert texts[:2] == ["good movie", "bad movie"] and labels[:2] == ["pos", "neg"]


def test_text_file_and_corpus(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("doc one\n\ndoc two\n")
    assert list(load_corpus(p)) == ["doc one", "doc two"]
    assert list(load_corpus(p, per_file=True)) == ["doc one\n\ndoc two\n"]
    w = tmp_path / "w.txt"
    w.write_text(" \n = A = \n \n text a \n = = Sub = = \n more \n \n = B = \n \n text b \n")
    arts = list(load_corpus(w, wikitext_articles=True))
    assert len(arts) == 2 and "Sub" in arts[0] and "text b" in arts[1]


def test_aclimdb_folder(tmp_path):
    for lab, texts in {"pos": ["great", "fine<br />film"], "neg": ["bad"]}.items():
        (tmp_path / "train" / lab).mkdir(parents=True)
        for i, t in enumerate(texts):
            (tmp_path / "train" / lab / f"{i}_7.txt").write_text(t)
    texts, labels = read_texts(tmp_path / "train")
    assert labels == ["neg", "pos", "pos"] and texts[0] == "bad"
    assert list(load_corpus(tmp_path / "train")) == ["bad", "great", "fine<br />film"]


def test_multi_text_cols_and_multilabel(tmp_path):
    p = tmp_path / "m.csv"
    p.write_text("title,body,tags\n" + "T1,b1,a|b\nT2,b2,b\nT3,b3,a\n" * 4)
    texts, labels = read_texts(p, ["title", "body"], "tags", label_delim="|")
    assert texts[0] == "xxfld 1 T1 xxfld 2 b1" and labels[0] == ["a", "b"]
    d = load_classification(p, text_cols=["title", "body"], label_col="tags", multi_label=True,
                            valid_pct=0.25)
    assert d.classes == ["a", "b"] and d.train.labels.shape[1] == 2


def test_load_classification_split_and_int_labels(tmp_path):
    p = _csv(tmp_path / "i.csv", [(f"text {i}", i % 3) for i in range(30)])
    d = load_classification(p, valid_pct=0.2, seed=1)
    assert d.classes == ["0", "1", "2"] and len(d.valid) == 6 and len(d.train) == 24
    assert sorted(d.valid.labels.tolist()) == [0, 0, 1, 1, 2, 2]  # stratified
    d2 = load_classification(p, valid_pct=0.2, seed=1)
    assert d2.valid.texts == d.valid.texts


def test_missing_file_and_column(tmp_path):
    with pytest.raises(UlmfitError, match="not found"):
        read_texts(tmp_path / "nope.csv")
    p = _csv(tmp_path / "d.csv")
    with pytest.raises(UlmfitError, match=r"no column 'review'.*available columns: text, label"):
        read_texts(p, "review", "label")


def test_empty_texts(tmp_path, caplog):
    p = _csv(tmp_path / "e.csv", [("ok", "a"), ("  ", "b"), ("fine", "a")])
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        texts, labels = read_texts(p, "text", "label")
    assert texts == ["ok", "fine"] and labels == ["a", "a"] and "1 empty" in caplog.text
    with pytest.raises(UlmfitError, match="row 2"):
        read_texts(p, "text", "label", strict=True)
    q = _csv(tmp_path / "all_empty.csv", [(" ", "a")])
    with pytest.raises(UlmfitError, match="no texts left"):
        read_texts(q, "text", "label")


def test_missing_and_unknown_labels(tmp_path):
    p = tmp_path / "ml.csv"
    p.write_text("text,label\na,x\nb,\n")
    with pytest.raises(UlmfitError, match="no label"):
        read_texts(p, "text", "label")
    tr = _csv(tmp_path / "tr.csv")
    te = _csv(tmp_path / "te.csv", [("zzz", "neutral")])
    with pytest.raises(UlmfitError, match="never seen.*'neutral'.*known labels: neg, pos"):
        load_classification(tr, test=te)


def test_a_test_file_without_labels_is_read_unlabelled_and_says_so(tmp_path, caplog):
    tr = _csv(tmp_path / "tr.csv")
    te = tmp_path / "te.csv"
    te.write_text("text\nsome words\nmore words\n")
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        data = load_classification(tr, test=te)
    assert data.test.texts == ["some words", "more words"] and data.test.labels is None
    assert "has no 'label' column" in caplog.text and "no test metrics" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        assert load_classification(tr, test=_csv(tmp_path / "te2.csv")).test.labels is not None
    assert "no test metrics" not in caplog.text


def test_invalid_utf8(tmp_path, caplog):
    p = tmp_path / "bad.csv"
    p.write_bytes(b"text,label\ncaf\xe9 ok,a\nfine,b\n")
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        texts, _ = read_texts(p, "text", "label")
    assert texts[0] == "caf\ufffd ok" and "1 invalid UTF-8" in caplog.text
    caplog.clear()
    p.write_bytes(b"title,text,label\nfine,ok,a\nalso fine,caf\xe9,b\n")
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        read_texts(p, ["title", "text"], "label")
    assert "first in data row 2, column 'text'" in caplog.text
    caplog.clear()
    t = tmp_path / "bad.txt"
    t.write_bytes(b"one\ntwo\nthr\xffee\n")
    with caplog.at_level(logging.WARNING, logger="ulmfit"):
        assert read_lines(t) == ["one", "two", "thr\ufffdee"]
    assert "first in line 3" in caplog.text


def test_literal_nan_label_is_no_class(tmp_path):
    p = tmp_path / "nan.csv"
    p.write_text("text,label\nok,a\nhm,NaN\nfine,b\n")
    with pytest.raises(UlmfitError, match="1 row\\(s\\) have no label in column 'label' \\(first: data row 2\\)"):
        read_texts(p, "text", "label")


def test_datasets_cache_goes_under_ulmfit_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ULMFIT_CACHE", str(tmp_path / "cache"))
    read_texts(_csv(tmp_path / "d.csv"), "text", "label")
    assert (tmp_path / "cache" / "datasets").is_dir()


def test_cache_reused(tmp_path):
    p = _csv(tmp_path / "d.csv")
    texts, _ = read_texts(p, "text", "label")
    tok = TextTokenizer.train(texts, min_freq=1)
    cache = TokenCache(tmp_path / "cache")
    ids1, l1 = cache.get_or_encode(tok, texts, file_hash(p))
    ids2, l2 = cache.get_or_encode(tok, texts, file_hash(p))
    assert (cache.misses, cache.hits) == (1, 1)
    assert ids1.tolist() == ids2.tolist() and l1.tolist() == l2.tolist()
    assert [a.tolist() for a in TokenCache.split(ids2, l2)] == tok.encode_batch(texts)
    from ulmfit.text.tokenize.rules import RuleConfig
    tok2 = TextTokenizer.train(texts, min_freq=1, rules=RuleConfig(case=False))
    cache.get_or_encode(tok2, texts, file_hash(p))
    assert cache.misses == 2


def test_phases_reuse_cached_tokens(tmp_path, monkeypatch):
    from ulmfit.phases.classifier import _ids
    from ulmfit.text.awd_lstm.lm_train import make_streams
    from ulmfit.text.awd_lstm.text_classifier import TextClassifier

    texts = [f"text number {i} about movies and films" for i in range(50)]
    tok = TextTokenizer.train(texts, min_freq=1)
    cache = TokenCache(tmp_path / "cache")
    first = make_streams(tok, texts[:40], texts[40:], tmp_path / "w", bs=4, bptt=8, seed=0, cache=cache)
    clf = TextClassifier(None, tok, ["a", "b"], backwards=True)
    ids_first = _ids(clf, texts, "x", False, cache)
    assert cache.misses == 3
    expect = tok.encode_batch(texts[:1])[0][::-1]  # backward: reversed
    monkeypatch.setattr(TextTokenizer, "encode_flat", lambda *a, **k: pytest.fail("tokenized again"))
    again = make_streams(tok, texts[:40], texts[40:], tmp_path / "w2", bs=4, bptt=8, seed=0, cache=cache)
    ids_again = _ids(clf, texts, "x", False, cache)
    assert cache.hits == 3 and again[2] == first[2]
    assert [a.tolist() for a in ids_again] == [a.tolist() for a in ids_first]
    assert ids_first[0].tolist() == expect
    assert not (tmp_path / "w2").exists()  # nothing numericalized again
