"""Prediction speed-ups keep the answers: rows that have not started are skipped exactly, and int8
LSTM weights and bf16 autocast stay within the stated tolerance of fp32 on a trained classifier
(issue #25); `auto` picks by what the CPU has."""

import numpy as np
import pytest
import torch

from cli_helpers import DATA
from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier
from ulmfit.text.awd_lstm.model import AWDLSTMConfig
from ulmfit.text.awd_lstm.quantize import int8_available
from ulmfit.text.awd_lstm.text_classifier import TextClassifier


def test_prediction_skips_rows_that_have_not_started_without_changing_them():
    torch.manual_seed(0)
    m = AWDLSTMClassifier(AWDLSTMConfig(vocab_size=40, emb_size=8, n_hid=12, n_layers=2), 3, bptt=4, max_len=8).eval()
    rows = [list(range(9, 40)) * 2, [2, 11, 12], list(range(9, 25)), [2, 30]]
    width = max(len(r) for r in rows)
    x = torch.tensor([[1] * (width - len(r)) + r for r in rows])
    with torch.no_grad():
        together = m(x)  # rows 2-4 start chunks later: skipped until they start
        alone = torch.cat([m(torch.tensor([r])) for r in rows])
        m.train()
        m.encoder.emb_dp.p = m.encoder.input_dp.p = 0.0  # the training path, dropouts off
        for d in m.encoder.hidden_dps:
            d.p = 0.0
        for r in m.encoder.rnns:
            r.weight_p = 0.0
        m.head.eval()
        trained_path = m(x)
    assert torch.allclose(together, alone, atol=1e-5) and torch.allclose(together, trained_path, atol=1e-5)


def _close_to_fp32(clf, fast, max_dp: float, agree: float) -> None:
    """``fast`` (a faster copy of ``clf``) on the TREC-6 test questions: probabilities within
    ``max_dp`` of fp32, the same answer on at least ``agree`` of them, accuracy within a point."""
    from ulmfit.text.data.readers import read_texts

    texts, labels = read_texts(DATA / "trec6" / "test.csv", ["text"], "label")
    p32, p = clf.predict_proba(texts), fast.predict_proba(texts)
    assert p.dtype == np.float32 and not np.array_equal(p, p32)  # it did run differently
    y = np.array([clf.classes.index(v) for v in labels])
    assert np.abs(p - p32).max() < max_dp
    assert (p.argmax(1) == p32.argmax(1)).mean() >= agree
    assert abs(float((p.argmax(1) == y).mean()) - float((p32.argmax(1) == y).mean())) <= 0.01


@pytest.mark.skipif(not int8_available(), reason="no CPU int8 engine in this torch build")
def test_int8_prediction_stays_close_to_fp32(tiny_run):
    clf = TextClassifier.load(tiny_run[0] / "classifier")
    q = clf.int8()
    assert type(clf.model.encoder.rnns[0]).__name__ == "WeightDrop"  # the original is left alone
    assert ".quantized." in type(q.model.encoder.rnns[0].module).__module__
    _close_to_fp32(clf, q, 0.02, 0.99)


def test_bf16_prediction_stays_close_to_fp32(tiny_run):
    clf = TextClassifier.load(tiny_run[0] / "classifier")
    b = clf.bf16()
    assert b.autocast == torch.bfloat16 and clf.autocast is None and b.model is clf.model
    _close_to_fp32(clf, b, 0.05, 0.98)


@pytest.mark.parametrize("bf16_cpu", [True, False])
def test_auto_precision_picks_bf16_on_bf16_cpus_else_int8(tiny_run, monkeypatch, bf16_cpu):
    from ulmfit.phases import use

    out, _ = tiny_run
    clf = TextClassifier.load(out / "classifier")
    monkeypatch.setattr(use, "cpu_has_bf16", lambda: bf16_cpu)
    got = use.with_precision(clf, "auto")
    if bf16_cpu:
        assert got.autocast == torch.bfloat16 and got.model is clf.model
    elif int8_available():
        assert got.autocast is None and ".quantized." in type(got.model.encoder.rnns[0].module).__module__
    assert use.with_precision(clf, "fp32") is clf
    assert use.with_precision(clf, "bf16").autocast == torch.bfloat16  # asked for: on any CPU
