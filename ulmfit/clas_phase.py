"""Phase 3 (text classifier) and the commands that use a trained classifier: evaluate, predict."""

from __future__ import annotations

import csv
import io
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ulmfit import reports
from ulmfit.config import ClassifierConfig
from ulmfit.core import LayerGroups, Trainer, build_strategy, lr_find, set_seed
from ulmfit.errors import UlmfitError


@dataclass
class ClasSetup:
    trainer: Trainer
    stages: list
    clf: object          # TextClassifier
    data: object         # ClassificationData
    test_ids: list | None
    out: Path


def _subsample(split, n: int | None, seed: int):
    """A stratified, seeded subsample of n labelled rows (low-shot runs)."""
    from ulmfit.text.readers import Split

    if not n or n >= len(split):
        return split
    y = split.labels if split.labels.ndim == 1 else split.labels.argmax(1)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    take = np.maximum(1, np.round(counts / counts.sum() * n).astype(int))
    idx = np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)])
    idx = np.sort(idx)
    return Split([split.texts[i] for i in idx], split.labels[idx])


def _ids(clf, texts, where: str, strict: bool, cache=None):
    texts = list(texts)  # ids reversed for a backward classifier
    parts = clf.encode(texts) if cache is None else clf.parts(*cache.get_or_encode(clf.tokenizer, texts))
    empty = [i for i, p in enumerate(parts) if len(p) <= 1]  # only xxbos left
    if empty and strict:
        raise UlmfitError(f"{where}: {len(empty)} text(s) are empty after tokenization, e.g. row {empty[0] + 1}")
    return parts


def _setup(cfg: ClassifierConfig, quiet: bool) -> ClasSetup:
    from ulmfit.text.class_data import ClassificationBatches
    from ulmfit.text.classifier import AWDLSTMClassifier, classifier_encoder_config
    from ulmfit.text.lm_io import _config_from as read_lm_config
    from ulmfit.text.lm_train import train_config
    from ulmfit.text.readers import load_classification
    from ulmfit.text.text_classifier import TextClassifier
    from ulmfit.text.tokenizer import TextTokenizer
    from ulmfit.core.checkpoint import load_weights
    from ulmfit.phases import _log, _world, token_cache

    t, d = cfg.train, cfg.data
    set_seed(t.seed)
    build_strategy(t.strategy, 5, epochs=t.epochs, lr=t.lr, lr_factor=t.lr_factor, schedule=t.schedule,
                   schedule_args=t.schedule_kwargs(), stages=t.stages)  # fail fast on a bad strategy
    if not d.train:
        raise UlmfitError("no training data: set data.train to a labelled file")
    data = load_classification(d.train, d.valid, d.test, text_cols=d.text_cols, label_col=d.label_col,
                               valid_pct=d.valid_pct, seed=t.seed, multi_label=d.multi_label,
                               label_delim=d.label_delim, strict=d.strict)
    data.train = _subsample(data.train, d.train_size or d.max_items, t.seed)
    _log(f"train-classifier: {len(data.train)} train / {len(data.valid)} valid texts, "
         f"{len(data.classes)} classes", quiet)
    if cfg.encoder:
        enc = Path(cfg.encoder)
        for name in ("lm_config.json", "tokenizer.json"):
            if not (enc / name).exists():
                raise UlmfitError(f"encoder folder {enc} is missing {name}; give a finetune-lm or pretrain output")
        tokenizer = TextTokenizer.load(enc)
        lm_cfg = read_lm_config(enc / "lm_config.json")
    else:
        tk = cfg.tokenizer
        tokenizer = TextTokenizer.train(data.train.texts, kind=tk.kind, min_freq=tk.min_freq,
                                        max_vocab=tk.max_vocab, vocab_size=tk.vocab_size)
        from ulmfit.phases import _awd_config

        lm_cfg = _awd_config(cfg.model, len(tokenizer))
    if lm_cfg.vocab_size != len(tokenizer):
        raise UlmfitError(f"{cfg.encoder}: the tokenizer has {len(tokenizer)} words but the encoder weights "
                          f"{lm_cfg.vocab_size}; the vocabulary does not match the encoder")
    model = AWDLSTMClassifier(classifier_encoder_config(lm_cfg, cfg.model.drop_mult), len(data.classes),
                              bptt=t.bptt, max_len=cfg.max_len, head_hidden=cfg.head_hidden)
    if cfg.encoder:
        load_weights(model.encoder, _encoder_weights(Path(cfg.encoder), model))
    clf = TextClassifier(model, tokenizer, data.classes, data.multi_label, cfg.threshold, cfg.model.backwards)
    rank, world = _world()
    cache = token_cache(d)
    mk = lambda split, shuffle, where: ClassificationBatches(  # noqa: E731
        _ids(clf, split.texts, where, d.strict, cache), split.labels, bs=t.bs, bptt=t.bptt,
        pad_id=tokenizer.pad_id, shuffle=shuffle, seed=t.seed, rank=rank, world_size=world,
        n_classes=len(data.classes) if data.multi_label else None)
    train = mk(data.train, True, str(d.train))
    valid = mk(data.valid, False, str(d.valid or d.train))
    test_ids = _ids(clf, data.test.texts, str(d.test), d.strict, cache) if data.test else None
    if data.multi_label:
        loss = lambda out, y: F.binary_cross_entropy_with_logits(out.float(), y)  # noqa: E731
        predict = lambda out: (torch.sigmoid(out.float()) >= cfg.threshold).float()  # noqa: E731
        metrics = {"accuracy": lambda p, y: float((p == y).all(1).mean())}
    else:
        loss = lambda out, y: F.cross_entropy(out.float(), y, label_smoothing=cfg.label_smoothing)  # noqa: E731
        predict = None
        metrics = {"accuracy": lambda p, y: float((p == y).mean())}
    from ulmfit.core import Hooks

    trainer = Trainer(model, LayerGroups(model, model.layer_groups()), loss, train, valid,
                      config=train_config(t, quiet), hooks=Hooks(predict=predict), metrics=metrics,
                      out_dir=Path(cfg.out))
    stages = build_strategy(t.strategy, len(trainer.groups), epochs=t.epochs, lr=t.lr, lr_factor=t.lr_factor,
                            schedule=t.schedule, schedule_args=t.schedule_kwargs(), stages=t.stages)
    return ClasSetup(trainer, stages, clf, data, test_ids, Path(cfg.out))


def _encoder_weights(enc: Path, model) -> Path:
    path = enc / "encoder.safetensors"
    if not path.exists():
        raise UlmfitError(f"encoder folder {enc} has no encoder.safetensors; run finetune-lm first "
                          "(or give its output folder)")
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        name = next((k for k in f.keys() if k.endswith("emb.weight")), None)
        if name is None:
            raise UlmfitError(f"{path} has no embedding: not an AWD-LSTM encoder")
        emb = f.get_slice(name).get_shape()
    want = list(model.encoder.emb.weight.shape)
    if list(emb) != want:
        raise UlmfitError(f"{path}: embedding {list(emb)} does not match the vocabulary/model {want}")
    return path


def _evaluate_split(clf, ids, labels, prefix: str, bs: int) -> tuple[dict, np.ndarray]:
    probs = clf.predict_proba(None, bs=bs, ids=ids)
    if clf.multi_label:
        preds = (probs >= clf.threshold).astype(np.float32)
        return {f"{prefix}_accuracy": float((preds == labels).all(1).mean())}, preds
    preds = probs.argmax(1)
    return reports.classification_metrics(preds, labels, clf.classes, prefix), preds


def train_classifier(cfg: ClassifierConfig, quiet: bool = False, resume: bool = False) -> dict:
    """Phase 3: train, evaluate on valid (and test when given), save the classifier; returns metrics."""
    from ulmfit.phases import _check_model_type, _finish

    if cfg.model.type == "transformers":
        from ulmfit import transformers_phase

        return transformers_phase.train_classifier(cfg, quiet)
    _check_model_type(cfg.model.type)
    started = time.time()
    s = _setup(cfg, quiet)
    history = s.trainer.fit(s.stages, resume=resume)
    clf, out, bs = s.clf, s.out, cfg.train.bs
    clf.model.eval()
    valid_ids = s.trainer.valid_loader.ids
    metrics, _ = _evaluate_split(clf, valid_ids, s.trainer.valid_loader.labels, "valid", bs)
    if s.test_ids is not None and s.data.test.labels is not None:
        test_m, preds = _evaluate_split(clf, s.test_ids, s.data.test.labels, "test", bs)
        metrics.update(test_m)
        if not clf.multi_label:
            (out / "classification_report.txt").write_text(
                reports.classification_report_text(preds, s.data.test.labels, clf.classes), encoding="utf-8")
            reports.plot_confusion(test_m["test_confusion_matrix"], clf.classes, out / "confusion_matrix.png",
                                   "test confusion matrix")
    elif not clf.multi_label:
        reports.plot_confusion(metrics["valid_confusion_matrix"], clf.classes, out / "confusion_matrix.png",
                               "validation confusion matrix")
    metrics.update(n_train=len(s.data.train), n_classes=len(clf.classes), epochs=len(history))
    clf.save(out)
    what = (f"Trained an AWD-LSTM classifier on `{cfg.data.train}` ({len(s.data.train)} labelled texts) from "
            f"{'the encoder `' + str(cfg.encoder) + '`' if cfg.encoder else 'a random encoder (no pretraining)'}, "
            f"strategy `{cfg.train.strategy}`, schedule `{cfg.train.schedule}`.")
    return _finish(out, cfg, "ulmfit train-classifier", what, started, metrics, history, quiet)


def lr_find_classifier(cfg: ClassifierConfig, start_lr, end_lr, num_it, quiet) -> dict:
    s = _setup(cfg, quiet)
    s.trainer.groups.set_trainable(s.stages[0].trainable(len(s.trainer.groups)))
    res = lr_find(s.trainer, start_lr, end_lr, num_it, lr_factor=cfg.train.lr_factor)
    res.save(s.out)
    return res


def evaluate(model_dir: str, data: str, text_cols=None, label_col=None, out=None, bs: int = 64,
             device: str | None = None) -> dict:
    """Metrics of a saved classifier on a labelled file (labels it never saw are an error), or the
    perplexity of a saved language model on any text file; on the CPU or on ``device``."""
    if (Path(model_dir) / "lm_config.json").is_file():
        return _lm_perplexity(model_dir, data, text_cols, out, device)
    from ulmfit.text.readers import _encode_labels, read_texts
    from ulmfit.text.text_classifier import load_classifier

    clf = load_classifier(model_dir, device)
    saved = _train_cols(model_dir)
    texts, raw = read_texts(data, text_cols or saved[0], label_col or saved[1],
                            label_delim=saved[2] if clf.multi_label else None)
    labels = _encode_labels(raw, clf.classes, str(data), clf.multi_label)
    metrics, preds = _evaluate_split(clf, clf.encode(texts), labels, "test", bs)
    if out:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        reports.write_metrics(o, metrics)
        if not clf.multi_label:
            (o / "classification_report.txt").write_text(
                reports.classification_report_text(preds, labels, clf.classes), encoding="utf-8")
            reports.plot_confusion(metrics["test_confusion_matrix"], clf.classes, o / "confusion_matrix.png")
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def _lm_perplexity(model_dir: str, data: str, text_cols, out, device: str | None = None) -> dict:
    from ulmfit.text.lm_io import load_lm
    from ulmfit.text.lm_train import perplexity
    from ulmfit.text.readers import load_corpus
    from ulmfit.text.text_classifier import resolve_device
    from ulmfit.text.tokenizer import TextTokenizer

    model, _ = load_lm(model_dir)
    if device:
        model.to(resolve_device(device))
    from ulmfit.phases import _is_table

    texts = list(load_corpus(data, text_cols=(text_cols or ["text"]) if _is_table(data) else None))
    m = perplexity(model, TextTokenizer.load(model_dir), texts)
    metrics = {"test_loss": m["loss"], "test_perplexity": m["perplexity"], "test_tokens": m["tokens"]}
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        reports.write_metrics(Path(out), metrics)
    return metrics


def _train_cols(model_dir: str):
    """(text_cols, label_col, label_delim) the classifier was trained with, from its config.yaml."""
    import yaml

    p = Path(model_dir) / "config.yaml"
    if not p.exists():
        return ["text"], "label", "|"
    d = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("data", {})
    return d.get("text_cols", ["text"]), d.get("label_col", "label"), d.get("label_delim", "|")


def predict_cli(model_dir: str, texts=None, file=None, text_cols=None, top_k: int = 1, fmt: str = "jsonl",
                bs: int = 64, device: str | None = None) -> None:
    """Print predictions for texts (arguments or a file) to stdout, one per input, in order."""
    from ulmfit.phases import _is_table
    from ulmfit.text.readers import load_corpus, read_texts
    from ulmfit.text.text_classifier import load_classifier

    if fmt not in ("jsonl", "csv"):
        raise UlmfitError(f"--format must be jsonl or csv, got {fmt!r}")
    clf = load_classifier(model_dir, device)
    if file:
        texts = (read_texts(file, text_cols or _train_cols(model_dir)[0])[0] if _is_table(file)
                 else list(load_corpus(file)))
    texts = list(texts or [])
    if not texts:
        raise UlmfitError("no texts to classify")
    rows = clf.predict(texts, bs=bs, top_k=top_k)
    if fmt == "jsonl":
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in rows))
        return
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label", "probability"] + [f"top{i + 1}" for i in range(top_k)])
    for r in rows:
        w.writerow([r["text"], r["label"], f"{r['probability']:.6f}"] +
                   [f"{k['label']}:{k['probability']:.6f}" for k in r["top_k"]])
    sys.stdout.write(buf.getvalue())
