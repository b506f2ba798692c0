"""Forward + backward ensemble: the backward twin of a recipe, reversed reading, averaged probabilities."""
import json
import shutil

import numpy as np
import pandas as pd
import pytest

from cli_helpers import DATA, TINY, ulmfit
from ulmfit.phases.config import recipe_config
from ulmfit.errors import UlmfitError
from ulmfit.phases import backward_recipe
from ulmfit.core.predictions import EnsembleClassifier
from ulmfit.phases import load_classifier, make_ensemble
from ulmfit.core.accel import cpu_has_bf16
from ulmfit.phases.use import with_precision
from ulmfit.text.awd_lstm.quantize import int8_available
from ulmfit.text.awd_lstm.text_classifier import TextClassifier


def test_backward_recipe_chains_backward_phases(tmp_path):
    cfg = recipe_config("configs/cpu-small.yaml", [], str(tmp_path / "r"))
    tw = backward_recipe(cfg)
    assert [getattr(tw, p).model.backwards for p in ("pretrain", "finetune_lm", "classifier")] == [True] * 3
    assert not cfg.classifier.model.backwards  # the forward recipe is untouched
    assert tw.finetune_lm.pretrained == tw.pretrain.out == str(tmp_path / "r" / "backward" / "pretrain")
    assert tw.classifier.encoder == tw.finetune_lm.out == str(tmp_path / "r" / "backward" / "finetune_lm")
    no_pre = recipe_config("configs/cpu-small.yaml", ["pretrain=null", "finetune_lm.pretrained=runs/x"], None)
    with pytest.raises(UlmfitError, match="backward_pretrained"):
        backward_recipe(no_pre)
    no_pre.backward_pretrained = "runs/back-lm"
    assert backward_recipe(no_pre).finetune_lm.pretrained == "runs/back-lm"


@pytest.fixture(scope="module")
def ensemble_run(tiny_run):
    out, _ = tiny_run  # forward phases exist: only the backward ones and the ensemble run
    r = ulmfit("run", "configs/cpu-small.yaml", "--out", str(out), "--quiet", "--set", "ensemble=true",
               *[a for s in TINY for a in ("--set", s)])
    return out, r


def test_ensemble_run_trains_backward_twin_and_averages(ensemble_run):
    out, r = ensemble_run
    back = TextClassifier.load(out / "backward" / "classifier")
    fwd = TextClassifier.load(out / "classifier")
    assert back.backwards and not fwd.backwards
    text = "What is the capital of France ?"
    assert back.encode([text])[0].tolist() == back.tokenizer.encode(text)[::-1]
    assert fwd.encode([text])[0].tolist() == fwd.tokenizer.encode(text)
    summary = json.loads((out / "metrics.json").read_text())
    assert "backward.classifier.test_accuracy" in summary and "ensemble.test_accuracy" in summary
    ens = load_classifier(out / "ensemble")
    assert isinstance(ens, EnsembleClassifier) and len(ens.members) == 2
    test = pd.read_csv(DATA / "trec6" / "test.csv")
    texts = test["text"].tolist()[:50]
    p = ens.predict_proba(texts)
    assert np.allclose(p, (fwd.predict_proba(texts) + back.predict_proba(texts)) / 2, atol=1e-6)
    m = json.loads((out / "ensemble" / "metrics.json").read_text())
    assert m["test_accuracy"] == pytest.approx(summary["ensemble.test_accuracy"])


def test_ensemble_folder_predicts_and_evaluates_from_the_cli(ensemble_run):
    out, _ = ensemble_run
    r = ulmfit("predict", str(out / "ensemble"), "How far is the moon ?")
    row = json.loads(r.stdout)
    assert row["label"] in load_classifier(out / "ensemble").classes
    r = ulmfit("evaluate", str(out / "ensemble"), str(DATA / "trec6" / "test.csv"))
    assert json.loads(r.stdout)["test_accuracy"] == pytest.approx(
        json.loads((out / "ensemble" / "metrics.json").read_text())["test_accuracy"])


def test_backward_classifier_is_not_exported(ensemble_run, tmp_path):
    out, _ = ensemble_run
    r = ulmfit("export", str(out / "backward" / "classifier"), "--out", str(tmp_path / "x"), check=False)
    assert r.returncode == 2 and "backward classifier" in r.stderr


def test_members_must_share_classes(ensemble_run, tmp_path):
    out, _ = ensemble_run
    fwd = TextClassifier.load(out / "classifier")
    other = TextClassifier(fwd.model, fwd.tokenizer, list(reversed(fwd.classes)))
    with pytest.raises(UlmfitError, match="disagree"):
        EnsembleClassifier([fwd, other])


@pytest.mark.skipif(not int8_available(), reason="no CPU int8 engine in this torch build")
def test_ensemble_predicts_with_fast_members_by_default(ensemble_run):
    out, _ = ensemble_run
    ens = load_classifier(out / "ensemble")
    fast = with_precision(ens, "auto")
    assert isinstance(fast, EnsembleClassifier) and fast is not ens
    texts = pd.read_csv(DATA / "trec6" / "test.csv")["text"].tolist()[:50]
    fast_member = (lambda m: m.bf16()) if cpu_has_bf16() else (lambda m: m.int8())  # what auto picks here
    want = np.mean([fast_member(m).predict_proba(texts) for m in ens.members], axis=0)
    np.testing.assert_allclose(fast.predict_proba(texts), want, atol=1e-6)
    assert np.abs(fast.predict_proba(texts) - ens.predict_proba(texts)).max() < 0.1
    assert with_precision(ens, "fp32") is ens


def test_ensemble_command_averages_any_classifier_folders(ensemble_run, tmp_path):
    """`ulmfit ensemble OUT A B --test FILE` makes the folder `ulmfit run ... ensemble=true` makes,
    from classifier folders trained anywhere; bad members are one line and exit 2."""
    out, _ = ensemble_run
    fwd, back, ens = out / "classifier", out / "backward" / "classifier", tmp_path / "pair"
    r = ulmfit("ensemble", str(ens), str(fwd), str(back), "--test", str(DATA / "trec6" / "test.csv"))
    got = json.loads(r.stdout)
    assert got["members"] == [str(fwd), str(back)]
    assert got["test_accuracy"] == pytest.approx(json.loads((out / "metrics.json").read_text())["ensemble.test_accuracy"])
    assert json.loads((ens / "metrics.json").read_text())["test_accuracy"] == got["test_accuracy"]
    assert json.loads((ens / "run.json").read_text())["kind"] == "ensemble"
    texts = pd.read_csv(DATA / "trec6" / "test.csv")["text"].tolist()[:20]
    np.testing.assert_allclose(load_classifier(ens).predict_proba(texts),
                               load_classifier(out / "ensemble").predict_proba(texts), atol=1e-6)

    def fails(*args):
        res = ulmfit("ensemble", *map(str, args), check=False)
        assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
        return res.stderr

    assert "--force" in fails(ens, fwd, back)  # an ensemble is there already
    assert "at least two" in fails(tmp_path / "one", fwd)
    assert "language model" in fails(tmp_path / "lm", fwd, out / "finetune_lm")
    assert "twice" in fails(tmp_path / "dup", fwd, fwd)
    assert "--test FILE" in fails(tmp_path / "cols", fwd, back, "--text-col", "text")
    assert "not an ensemble folder" in fails(out / "finetune_lm", fwd, back)
    other = tmp_path / "other"  # a copy of the forward classifier whose classes come in another order
    shutil.copytree(fwd, other)
    cfg = json.loads((other / "classifier_config.json").read_text())
    cfg["classes"] = list(reversed(cfg["classes"]))
    (other / "classifier_config.json").write_text(json.dumps(cfg))
    assert "disagree" in fails(tmp_path / "mixed", fwd, other)
    assert not (tmp_path / "mixed" / "ensemble.json").exists()
    r = ulmfit("ensemble", str(ens), str(back), str(fwd), "--force")  # replaced: members listed anew, old metrics gone
    assert json.loads(r.stdout)["members"] == [str(back), str(fwd)] and not (ens / "metrics.json").exists()


def test_ensemble_of_relative_folders_and_what_it_refuses(ensemble_run, tmp_path, monkeypatch):
    """Members named relative to the working folder; the ensemble loads from anywhere; a failed
    --test writes nothing; an ensemble is not a member, nor inside one; columns come from member 1."""
    out, _ = ensemble_run
    work = tmp_path / "work"
    work.mkdir()
    for name, src in (("fwd", out / "classifier"), ("back", out / "backward" / "classifier")):
        shutil.copytree(src, work / name)
    cfg = (work / "fwd" / "config.yaml").read_text()  # member 1 was trained on a column named "question"
    (work / "fwd" / "config.yaml").write_text(cfg.replace("text_cols:\n  - text", "text_cols:\n  - question"))
    test = pd.read_csv(DATA / "trec6" / "test.csv").head(40).rename(columns={"text": "question"})
    test.to_csv(work / "test.csv", index=False)
    monkeypatch.chdir(work)
    with pytest.raises(UlmfitError, match="label"):  # no such label column: nothing is written
        make_ensemble("pair", ["fwd", "back"], test="test.csv", label_col="nope")
    assert not (work / "pair").exists() and not (work / "pair.partial").exists()
    got = make_ensemble("pair", ["fwd", "back"], test="test.csv")
    texts = test["question"].tolist()
    want = (load_classifier(work / "fwd").predict_proba(texts) + load_classifier(work / "back").predict_proba(texts)) / 2
    assert got["test_accuracy"] == pytest.approx(np.mean(want.argmax(1) == [
        load_classifier(work / "fwd").classes.index(c) for c in test["label"]]))
    assert json.loads((work / "pair" / "run.json").read_text())["parent"] == str(work / "fwd")
    monkeypatch.chdir(tmp_path)
    np.testing.assert_allclose(load_classifier(work / "pair").predict_proba(texts), want, atol=1e-6)
    with pytest.raises(UlmfitError, match="an ensemble itself"):
        make_ensemble(work / "nested", [work / "pair", work / "fwd"])
    with pytest.raises(UlmfitError, match="inside the member"):
        make_ensemble(work / "fwd" / "ens", [work / "fwd", work / "back"])
    (work / "file").write_text("x")
    with pytest.raises(UlmfitError, match="existing file"):
        make_ensemble(work / "file", [work / "fwd", work / "back"])
