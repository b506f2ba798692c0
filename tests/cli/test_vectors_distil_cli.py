"""Word vectors and distillation through the CLI (issue #23): a teacher classifier labels TREC-6
questions, an AWD-LSTM student with word vectors learns from its probabilities on labelled and
unlabelled questions; and the bad input of both, one line and exit 2."""

import csv
import json

import numpy as np
import pytest
import torch

from cli_helpers import DATA, TINY, ulmfit

TREC = DATA / "trec6" / "train.csv"
# a small AWD-LSTM trained in seconds
SMALL = ["model.emb_size=60", "model.n_hid=64", "model.n_layers=2", "train.bs=32", "train.bptt=24",
         "train.strategy=full", "train.epochs=4", "train.lr=0.01", "train.schedule=one_cycle"]


def _sets(*pairs):
    return [a for p in pairs for a in ("--set", p)]


def _slices(tmp):
    rows = list(csv.DictReader(TREC.open(encoding="utf-8")))
    with (tmp / "labelled.csv").open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, ["label", "text"], extrasaction="ignore")
        w.writeheader()
        w.writerows(rows[:600])
    (tmp / "unlabelled.txt").write_text("\n".join(r["text"] for r in rows[600:2600]) + "\n", encoding="utf-8")
    return tmp / "labelled.csv", tmp / "unlabelled.txt"


def _vectors(tmp, words, dim=20):
    rng = np.random.default_rng(0)
    lines = [w + " " + " ".join(f"{x:.3f}" for x in rng.normal(0, 0.3, dim)) for w in words]
    (tmp / "vectors.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp / "vectors.txt"


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("distil")
    labelled, unlabelled = _slices(tmp)
    out = tmp / "teacher"
    ulmfit("train-classifier", "-o", str(out), "-q",
           *_sets(*SMALL, f"data.train={TREC}", f"data.test={DATA / 'trec6' / 'test.csv'}", "data.max_items=3000"))
    return tmp, out, labelled, unlabelled


def test_student_with_vectors_distils_the_teacher_and_beats_the_majority_class(teacher):
    tmp, t_out, labelled, unlabelled = teacher
    vec = _vectors(tmp, ["what", "who", "where", "how", "many", "when", "city", "name", "the", "is"])
    out = tmp / "student"
    ulmfit("train-classifier", "-o", str(out), "-q", *_sets(
        *SMALL, f"data.train={labelled}", f"data.test={DATA / 'trec6' / 'test.csv'}",
        f"distil.teacher={t_out}", f"distil.texts={unlabelled}", "distil.max_texts=1000",
        "distil.augment=1", f"model.vectors.path={vec}", "model.vectors.min_freq=1"))
    m = json.loads((out / "metrics.json").read_text())
    t = json.loads((t_out / "metrics.json").read_text())
    # 1,000 transfer texts, then up to one changed copy of each of the 540 training questions
    assert 1000 + 400 < m["distil_texts"] <= 1000 + 540 and 0 < m["teacher_train_accuracy"] <= 1
    assert 100 < m["peak_rss_mb"] < 24 * 1024  # every run reports its peak memory
    assert m["vector_words"] == 10  # every word of the vectors file is in the vocabulary
    majority = 138 / 500  # DESC, the most frequent class of the TREC-6 test set
    assert m["test_accuracy"] > majority + 0.2, (m, t["test_accuracy"])  # 0.79 here, the teacher 0.828
    cfg = (out / "config.yaml").read_text()
    assert "teacher:" in cfg and "vectors:" in cfg
    # the student predicts on its own, without the teacher
    r = ulmfit("predict", str(out), "How many people live in Paris ?")
    assert json.loads(r.stdout.splitlines()[0])["label"] in {"ABBR", "DESC", "ENTY", "HUM", "LOC", "NUM"}


def test_bad_teachers_and_vectors_are_one_line_exit_2(teacher):
    tmp, t_out, labelled, unlabelled = teacher
    two = tmp / "two_labels.csv"
    two.write_text("label,text\nyes,is it good ?\nno,is it bad ?\n" * 20, encoding="utf-8")
    (tmp / "empty").mkdir(exist_ok=True)
    bad_npy = tmp / "bad" / "v.npy"
    bad_npy.parent.mkdir(exist_ok=True)
    bad_npy.write_bytes(b"not numpy")
    (tmp / "bad" / "v.txt").write_text("what\n", encoding="utf-8")
    cases = [
        ([f"data.train={two}", f"distil.teacher={t_out}"], "a teacher must know exactly the data's labels"),
        ([f"data.train={labelled}", f"distil.teacher={tmp / 'empty'}"], "classifier.distil.teacher"),
        ([f"data.train={labelled}", f"distil.texts={unlabelled}"], "set distil.teacher too"),
        ([f"data.train={labelled}", f"model.vectors.path={bad_npy}"], "not a readable .npy"),
        ([f"data.train={labelled}", f"model.vectors.path={_vectors(tmp, ['what'], dim=80)}"],
         "more than the embedding's 60"),
        ([f"data.train={labelled}", "model.vectors.path=kumo_nothing_here"], "no such file or folder"),
        ([f"data.train={labelled}", "model.vectors.path=x", "model.vectors.layout=stack"], "vectors.layout"),
        ([f"data.train={labelled}", f"distil.teacher={t_out}", "distil.loss=l2"],
         "classifier.distil.loss 'l2' is not one of kl, mse"),
    ]
    for sets, message in cases:
        r = ulmfit("train-classifier", "-o", str(tmp / "bad_out"), "-q", "--force", *_sets(*SMALL, *sets),
                   check=False)
        assert r.returncode == 2, (sets, r.stderr[-1500:])
        assert message in r.stderr and "Traceback" not in r.stderr, (sets, r.stderr[-1500:])


def test_pretrain_with_frozen_projected_vectors_keeps_them_through_training(tmp_path):
    from ulmfit.text.awd_lstm.lm_io import load_lm
    from ulmfit.text.awd_lstm.vectors import embedding_from_vectors, load_vectors
    from ulmfit.text.tokenize.special import SPECIAL_TOKENS
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    vec = _vectors(tmp_path, ["the", "of", "and", "in", "was", "season", "zzqword"], dim=16)
    out = tmp_path / "lm"
    ulmfit("pretrain", "-c", "configs/cpu-small.yaml", "-o", str(out), "-q", *_sets(
        *[s.split(".", 1)[1] for s in TINY if s.startswith("pretrain.")], f"model.vectors.path={vec}",
        "model.vectors.layout=project", "model.vectors.freeze=true", "model.vectors.extra_words=3"))
    m = json.loads((out / "metrics.json").read_text())
    assert m["vector_words"] == 7
    model, cfg = load_lm(out)
    itos = TextTokenizer.load(out).vocab
    assert cfg.emb_size == 32 and "zzqword" in itos  # unseen in the corpus, it joined as an extra word
    want, found, _ = embedding_from_vectors(itos, load_vectors(vec), 32, "project", seed=42, skip=set(SPECIAL_TOKENS))
    got = model.encoder.emb.weight.detach()
    # the frozen vector rows are exactly what was placed, after training with weight decay
    torch.testing.assert_close(got[found], want[found], rtol=0, atol=0)
    assert not torch.equal(got[~found], want[~found])  # the other rows trained
