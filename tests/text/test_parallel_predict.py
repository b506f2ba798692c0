"""Prediction shared out over forked processes of one thread each (issue #25): the same batches,
the same probabilities as one process on one thread, every row back in input order."""

import os

import numpy as np
import pytest
import torch

from ulmfit.core.threads import one_thread, predict_workers
from ulmfit.forked import can_fork, fork_each
from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier
from ulmfit.text.awd_lstm.model import AWDLSTMConfig
from ulmfit.text.awd_lstm.text_classifier import TextClassifier
from ulmfit.text.tokenize.tokenizer import TextTokenizer

pytestmark = pytest.mark.skipif(not can_fork(), reason="no fork on this platform")
WORDS = "the a film movie good bad great awful plot acting was is not very boring fun".split()


def _classifier(multi_label=False):
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(1, 60)))) for _ in range(150)]
    tok = TextTokenizer.train(texts, min_freq=1)
    torch.manual_seed(0)
    cfg = AWDLSTMConfig(vocab_size=len(tok), emb_size=8, n_hid=12, n_layers=2)
    model = AWDLSTMClassifier(cfg, 3, bptt=8, max_len=32).eval()
    return TextClassifier(model, tok, ["x", "y", "z"], multi_label=multi_label), texts


@pytest.mark.parametrize("multi_label", [False, True])
def test_forked_prediction_equals_one_process(tmp_path, multi_label):
    clf, texts = _classifier(multi_label)
    threads = torch.get_num_threads()
    with one_thread():
        alone = clf.predict_proba(texts, bs=16, workers=1)
    pids = tmp_path / "pids"

    def note_pid(*_):
        with pids.open("a") as f:
            f.write(f"{os.getpid()}\n")

    clf.model.register_forward_hook(note_pid)
    for workers in (2, 3):
        shared = clf.predict_proba(texts, bs=16, workers=workers)
        assert np.array_equal(shared, alone)  # same batches, one thread each: bit for bit
    assert len(set(pids.read_text().split())) >= 3  # batches ran in this process and in children
    assert torch.get_num_threads() == threads and alone.shape == (150, 3)  # this process's threads back


def test_one_thread_restores_the_count():
    before = torch.get_num_threads()
    with one_thread():
        assert torch.get_num_threads() == 1
    with one_thread(False):
        assert torch.get_num_threads() == before
    assert torch.get_num_threads() == before


def test_worker_choice(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert predict_workers(2000, 64, "cpu") == 2  # one per thread torch may use
    assert predict_workers(200, 64, "cpu") == 2 and predict_workers(100, 64, "cpu") == 1  # 2 batches each
    assert predict_workers(2000, 64, "cuda") == 1
    assert predict_workers(2000, 64, "cpu", workers=1) == 1
    assert predict_workers(100, 64, "cuda", workers=5) == 2  # asked for: at most one per batch
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)  # OMP_NUM_THREADS=1, or a busy machine
    assert predict_workers(2000, 64, "cpu") == 1


def test_fork_each_keeps_order_and_redoes_a_failed_child():
    parent = os.getpid()
    assert fork_each(lambda k: (k, os.getpid() == parent), 3) == [(0, True), (1, False), (2, False)]

    def fails_in_children(k):
        if os.getpid() != parent:
            raise RuntimeError("child fails")
        return k * 10

    assert fork_each(fails_in_children, 3) == [0, 10, 20]
