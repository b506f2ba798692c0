"""Phase 3 for AWD-LSTMs: the fine-tuned encoder plus a concat-pooling head, trained with the
recipe's strategy (gradual unfreezing by default), evaluated on valid and test, saved."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import safe_open

from ulmfit.core import Hooks, LayerGroups, Trainer, lr_find, set_seed
from ulmfit.core.checkpoint import load_weights
from ulmfit.core.distillation import soft_targets_loss
from ulmfit.errors import UlmfitError
from ulmfit.phases import reports
from ulmfit.phases.common import finish, log, stages_for, token_cache, world
from ulmfit.phases.config import ClassifierConfig
from ulmfit.phases.distil import teacher_targets, transfer_texts
from ulmfit.phases.lm import awd_config
from ulmfit.phases.runs import read_run
from ulmfit.phases.sampling import subsample
from ulmfit.phases.vectors import place_vectors, train_tokenizer
from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier, classifier_encoder_config
from ulmfit.text.awd_lstm.lm_io import read_lm_config
from ulmfit.text.awd_lstm.text_classifier import TextClassifier
from ulmfit.text.data.class_data import ClassificationBatches
from ulmfit.text.data.readers import load_classification
from ulmfit.text.tokenize.tokenizer import TextTokenizer


@dataclass
class ClasSetup:
    trainer: Trainer
    stages: list
    clf: TextClassifier
    data: object         # ClassificationData
    test_ids: list | None
    out: Path
    info: dict           # what word vectors / a teacher added, for the run's metrics


def load_labelled(cfg: ClassifierConfig, multi_label: bool = True):
    """The recipe's train / valid / test splits, the training rows subsampled when data.train_size is set."""
    d = cfg.data
    if not d.train:
        raise UlmfitError("no training data: set data.train to a labelled file")
    data = load_classification(d.train, d.valid, d.test, text_cols=d.text_cols, label_col=d.label_col,
                               valid_pct=d.valid_pct, seed=cfg.train.seed,
                               multi_label=d.multi_label if multi_label else False,
                               label_delim=d.label_delim, strict=d.strict)
    data.train = subsample(data.train, d.train_size or d.max_items, cfg.train.seed)
    return data


def _ids(clf, texts, where: str, strict: bool, cache=None):
    texts = list(texts)  # ids reversed for a backward classifier
    parts = clf.encode(texts) if cache is None else clf.parts(*cache.get_or_encode(clf.tokenizer, texts))
    empty = [i for i, p in enumerate(parts) if len(p) <= 1]  # only xxbos left
    if empty and strict:
        raise UlmfitError(f"{where}: {len(empty)} text(s) are empty after tokenization, e.g. row {empty[0] + 1}")
    return parts


def _tokenizer_and_encoder(cfg: ClassifierConfig, train_texts):
    """(tokenizer, AWD-LSTM config, word vectors or None) from the encoder folder, or new ones for a
    random encoder (whose vocabulary the recipe's `model.vectors` may widen)."""
    if not cfg.encoder:
        tokenizer, vectors = train_tokenizer(train_texts, cfg.tokenizer, cfg.model.vectors)
        return tokenizer, awd_config(cfg.model, len(tokenizer)), vectors
    enc = Path(cfg.encoder)
    info = read_run(enc).verify() if enc.is_dir() else None
    if info is None or info.kind != "lm" or info.backend != "awd_lstm" or info.exported:
        raise UlmfitError(f"encoder folder {enc} is not an AWD-LSTM language model run; give a finetune-lm or "
                          "pretrain output")
    for name in ("lm_config.json", "tokenizer.json"):
        if not (enc / name).exists():
            raise UlmfitError(f"encoder folder {enc} is missing {name}; give a finetune-lm or pretrain output")
    tokenizer, lm_cfg = TextTokenizer.load(enc), read_lm_config(enc / "lm_config.json")
    if lm_cfg.vocab_size != len(tokenizer):
        raise UlmfitError(f"{cfg.encoder}: the tokenizer has {len(tokenizer)} words but the encoder weights "
                          f"{lm_cfg.vocab_size}; the vocabulary does not match the encoder")
    return tokenizer, lm_cfg, None


def _encoder_weights(enc: Path, model) -> Path:
    path = enc / "encoder.safetensors"
    if not path.exists():
        raise UlmfitError(f"encoder folder {enc} has no encoder.safetensors; run finetune-lm first "
                          "(or give its output folder)")
    with safe_open(str(path), "pt") as f:
        name = next((k for k in f.keys() if k.endswith("emb.weight")), None)
        if name is None:
            raise UlmfitError(f"{path} has no embedding: not an AWD-LSTM encoder")
        emb = f.get_slice(name).get_shape()
    want = list(model.encoder.emb.weight.shape)
    if list(emb) != want:
        raise UlmfitError(f"{path}: embedding {list(emb)} does not match the vocabulary/model {want}")
    return path


def _objective(cfg: ClassifierConfig, multi_label: bool):
    """(loss, predict hook, metrics) for single- or multi-label classification."""
    if multi_label:
        loss = lambda out, y: F.binary_cross_entropy_with_logits(out.float(), y)  # noqa: E731
        predict = lambda out: (torch.sigmoid(out.float()) >= cfg.threshold).float()  # noqa: E731
        return loss, predict, {"accuracy": lambda p, y: float((p == y).all(1).mean())}
    loss = lambda out, y: F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)  # noqa: E731
    return loss, None, {"accuracy": lambda p, y: float((p == y).mean())}


def _setup(cfg: ClassifierConfig, quiet: bool, load_teacher=None) -> ClasSetup:
    t, d = cfg.train, cfg.data
    set_seed(t.seed)
    stages_for(t, 5)  # fail fast on a bad strategy
    data = load_labelled(cfg)
    if data.valid is None:
        raise UlmfitError("data.valid_pct 0 (no validation split) is for transformers recipes; an AWD-LSTM "
                          "classifier needs a validation split (valid_pct > 0 or data.valid)")
    log(f"train-classifier: {len(data.train)} train / {len(data.valid)} valid texts, {len(data.classes)} classes",
        quiet)
    # a teacher's unlabelled texts are training texts too: a new vocabulary learns their words
    extra = transfer_texts(cfg.distil, d.text_cols, t.seed, data.train.texts) if cfg.distil.teacher else []
    tokenizer, lm_cfg, vectors = _tokenizer_and_encoder(cfg, list(data.train.texts) + extra)
    model = AWDLSTMClassifier(classifier_encoder_config(lm_cfg, cfg.model.drop_mult), len(data.classes),
                              bptt=t.bptt, max_len=cfg.max_len, head_hidden=cfg.head_hidden,
                              max_tokens=cfg.max_tokens)
    info = {}
    if cfg.encoder:
        load_weights(model.encoder, _encoder_weights(Path(cfg.encoder), model))
    elif vectors is not None:
        info.update(place_vectors(model.encoder, tokenizer, vectors, cfg.model.vectors, t.seed, quiet))
    clf = TextClassifier(model, tokenizer, data.classes, data.multi_label, cfg.threshold, cfg.model.backwards)
    rank, n_ranks = world()
    cache = token_cache(d)
    mk = lambda texts, labels, shuffle, where: ClassificationBatches(  # noqa: E731
        _ids(clf, texts, where, d.strict, cache), labels, bs=t.bs, bptt=t.bptt,
        pad_id=tokenizer.pad_id, shuffle=shuffle, seed=t.seed, max_tokens=model.max_tokens, rank=rank,
        world_size=n_ranks, n_classes=len(data.classes) if data.multi_label else None)
    loss, predict, metrics = _objective(cfg, data.multi_label)
    train_texts, train_labels = data.train.texts, data.train.labels
    if cfg.distil.teacher:
        if data.multi_label:
            raise UlmfitError("classifier.distil is for single-label classification")
        soft = teacher_targets(cfg.distil, load_teacher, data.classes, train_texts, train_labels, extra, quiet,
                               cache.dir if cache else None)
        train_texts, train_labels, info = soft.texts, soft.rows, {**info, **soft.info}
        loss = soft_targets_loss(len(data.classes), cfg.distil.weight, cfg.distil.temperature,
                                 cfg.distil.loss)
    train = mk(train_texts, train_labels, True, str(d.train))
    valid = mk(data.valid.texts, data.valid.labels, False, str(d.valid or d.train))
    test_ids = _ids(clf, data.test.texts, str(d.test), d.strict, cache) if data.test else None
    trainer = Trainer(model, LayerGroups(model, model.layer_groups()), loss, train, valid,
                      config=t.trainer_config(quiet), hooks=Hooks(predict=predict), metrics=metrics,
                      out_dir=Path(cfg.out))
    return ClasSetup(trainer, stages_for(t, len(trainer.groups)), clf, data, test_ids, Path(cfg.out), info)


def evaluate_split(clf, ids, labels, prefix: str, bs: int) -> tuple[dict, np.ndarray]:
    """Metrics (prefixed) and predictions of a classifier on encoded texts with their labels."""
    probs = clf.predict_proba(None, bs=bs, ids=ids)
    if clf.multi_label:
        preds = (probs >= clf.threshold).astype(np.float32)
        return {f"{prefix}_accuracy": float((preds == labels).all(1).mean())}, preds
    preds = probs.argmax(1)
    return reports.classification_metrics(preds, labels, clf.classes, prefix), preds


def write_evaluation(out: Path, clf, metrics: dict, preds, labels, prefix: str) -> None:
    """classification_report.txt (test only) and confusion_matrix.png of a single-label evaluation."""
    if clf.multi_label:
        return
    if prefix == "test":
        (out / "classification_report.txt").write_text(
            reports.classification_report_text(preds, labels, clf.classes), encoding="utf-8")
    title = "test confusion matrix" if prefix == "test" else "validation confusion matrix"
    reports.plot_confusion(metrics[f"{prefix}_confusion_matrix"], clf.classes, out / "confusion_matrix.png", title)


def train_classifier(cfg: ClassifierConfig, quiet: bool = False, resume: bool = False, load_teacher=None) -> dict:
    """Phase 3: train, evaluate on valid (and test when given), save the classifier; returns metrics.
    ``load_teacher`` (folder -> classifier) loads `classifier.distil.teacher`."""
    started = time.time()
    s = _setup(cfg, quiet, load_teacher)
    history = s.trainer.fit(s.stages, resume=resume)
    clf, out, bs = s.clf, s.out, cfg.train.bs
    clf.model.eval()
    metrics, preds = evaluate_split(clf, s.trainer.valid_loader.ids, s.trainer.valid_loader.labels, "valid", bs)
    if s.test_ids is not None and s.data.test.labels is not None:
        test_m, preds = evaluate_split(clf, s.test_ids, s.data.test.labels, "test", bs)
        metrics.update(test_m)
        write_evaluation(out, clf, test_m, preds, s.data.test.labels, "test")
    else:
        write_evaluation(out, clf, metrics, preds, None, "valid")
    metrics.update(n_train=len(s.data.train), n_classes=len(clf.classes), epochs=len(history), **s.info)
    clf.save(out)
    what = (f"Trained an AWD-LSTM classifier on `{cfg.data.train}` ({len(s.data.train)} labelled texts) from "
            f"{'the encoder `' + str(cfg.encoder) + '`' if cfg.encoder else 'a random encoder (no pretraining)'}, "
            f"strategy `{cfg.train.strategy}`, schedule `{cfg.train.schedule}`.")
    run = dict(kind="classifier", backend="awd_lstm", phase="classifier", parent=cfg.encoder)
    return finish(out, cfg, run, "ulmfit train-classifier", what, started, metrics, history, quiet)


def lr_find_classifier(cfg: ClassifierConfig, start_lr, end_lr, num_it, quiet):
    """LR range test on phase 3's set-up (its first stage's trainable groups)."""
    s = _setup(cfg, quiet)
    s.trainer.groups.set_trainable(s.stages[0].trainable(len(s.trainer.groups)))
    res = lr_find(s.trainer, start_lr, end_lr, num_it, lr_factor=cfg.train.lr_factor)
    res.save(s.out)
    return res
