"""A trained text classifier as one object: model + tokenizer + classes, saved without pickles.

`TextClassifier.predict(texts)` tokenizes in one batch call, sorts by length, runs batches
under inference mode and puts the results back in input order, so prediction is fast and
independent of the batch size.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ulmfit.core.checkpoint import atomic_write_text, load_weights, save_weights
from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm import AWDLSTMConfig
from ulmfit.text.cache import TokenCache
from ulmfit.text.class_data import ClassificationBatches
from ulmfit.text.classifier import AWDLSTMClassifier
from ulmfit.text.tokenizer import TextTokenizer

CONFIG_NAME = "classifier_config.json"
WEIGHTS_NAME = "model.safetensors"
ENSEMBLE_NAME = "ensemble.json"


@dataclass
class TextClassifier:
    model: AWDLSTMClassifier
    tokenizer: TextTokenizer
    classes: list[str]
    multi_label: bool = False
    threshold: float = 0.5
    backwards: bool = False  # reads every text's tokens in reverse (the backward half of an ensemble)

    # ---- persistence ------------------------------------------------------------------------
    def config_dict(self) -> dict:
        m = self.model
        return {"model_type": "ulmfit-awd-lstm-classifier", "awd_lstm": m.config.to_dict(),
                "n_classes": len(self.classes), "classes": self.classes, "multi_label": self.multi_label,
                "threshold": self.threshold, "bptt": m.bptt, "max_len": m.max_len,
                "head_hidden": m.head.layers[2].out_features,
                "head_ps": [m.head.layers[1].p, m.head.layers[5].p], "backwards": self.backwards}

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        save_weights(self.model, out / WEIGHTS_NAME)
        self.tokenizer.save(out)
        atomic_write_text(out / CONFIG_NAME, json.dumps(self.config_dict(), indent=1))

    @classmethod
    def load(cls, model_dir: str | Path, device: str | None = None) -> "TextClassifier":
        d = Path(model_dir)
        if not d.is_dir():
            raise UlmfitError(f"model folder {d} does not exist")
        for name in (CONFIG_NAME, WEIGHTS_NAME, "tokenizer.json"):
            if not (d / name).exists():
                raise UlmfitError(f"model folder {d} is missing {name}; is it a train-classifier output?")
        try:
            c = json.loads((d / CONFIG_NAME).read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise UlmfitError(f"{d / CONFIG_NAME} is not valid JSON: {e}") from None
        tok = TextTokenizer.load(d)
        cfg = AWDLSTMConfig.from_dict(c["awd_lstm"])
        if len(tok) != cfg.vocab_size:
            raise UlmfitError(f"{d}: the tokenizer has {len(tok)} words but the model was built for "
                              f"{cfg.vocab_size}; the vocabulary does not match the weights")
        model = AWDLSTMClassifier(cfg, c["n_classes"], c["bptt"], c["max_len"], c["head_hidden"], c["head_ps"])
        load_weights(model, d / WEIGHTS_NAME)
        model.eval()
        if device:
            model.to(device)
        return cls(model, tok, list(c["classes"]), bool(c["multi_label"]), float(c["threshold"]),
                   bool(c.get("backwards", False)))

    # ---- prediction -------------------------------------------------------------------------
    def encode(self, texts: list[str]) -> list[np.ndarray]:
        return self.parts(*self.tokenizer.encode_flat(list(texts)))

    def parts(self, ids, lengths) -> list[np.ndarray]:
        """Per-text int64 id arrays from the flat form (reversed for a backward classifier)."""
        parts = TokenCache.split(np.asarray(ids, dtype=np.int64), lengths)
        return [p[::-1].copy() for p in parts] if self.backwards else parts

    @torch.inference_mode()
    def predict_proba(self, texts: list[str], bs: int = 64, ids: list | None = None) -> np.ndarray:
        """Probabilities (n_texts, n_classes) in input order."""
        if not len(texts if ids is None else ids):
            return np.zeros((0, len(self.classes)), np.float32)
        ids = self.encode(texts) if ids is None else ids
        self.model.eval()
        batches = ClassificationBatches(ids, None, bs=bs, bptt=self.model.bptt, pad_id=self.tokenizer.pad_id,
                                        shuffle=False)
        device = next(self.model.parameters()).device
        outs = []
        for x, _ in batches:
            logits = self.model(x.to(device)).float()
            outs.append(torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1))
        return batches.restore(torch.cat(outs).cpu()).numpy()

    def predict(self, texts: list[str], bs: int = 64, top_k: int = 1) -> list[dict]:
        """One dict per text: label (or labels for multi-label), probability, top_k list."""
        return prediction_rows(self, texts, self.predict_proba(texts, bs=bs), top_k)

    def to(self, device) -> "TextClassifier":
        self.model.to(device)
        return self


def prediction_rows(clf, texts: list[str], probs: np.ndarray, top_k: int) -> list[dict]:
    """The rows `predict` prints: label, probability, top-k (and labels over threshold, multi-label)."""
    k = max(1, min(top_k, len(clf.classes)))
    out = []
    for text, p in zip(texts, probs):
        order = np.argsort(-p)[:k]
        row = {"text": text, "label": clf.classes[int(order[0])], "probability": float(p[order[0]]),
               "top_k": [{"label": clf.classes[int(i)], "probability": float(p[i])} for i in order]}
        if clf.multi_label:
            row["labels"] = [clf.classes[i] for i in np.flatnonzero(p >= clf.threshold)]
        out.append(row)
    return out


class TransformersTextClassifier:
    """A transformers classifier folder behind the same predict interface as TextClassifier."""

    multi_label = False
    threshold = 0.5

    def __init__(self, model):
        self.model = model
        self.classes = [str(c) for c in model.labels]

    @classmethod
    def load(cls, folder: str | Path) -> "TransformersTextClassifier":
        from ulmfit.text.transformers_backbone import load_transformer_classifier

        return cls(load_transformer_classifier(folder))

    def encode(self, texts: list[str]) -> list[str]:
        return list(texts)  # the transformers tokenizer runs inside predict_proba

    def predict_proba(self, texts, bs: int = 64, ids: list | None = None) -> np.ndarray:
        texts = ids if texts is None else texts
        return self.model.predict_proba(list(texts), bs).numpy()

    def predict(self, texts: list[str], bs: int = 64, top_k: int = 1) -> list[dict]:
        return prediction_rows(self, texts, self.predict_proba(texts, bs=bs), top_k)

    def to(self, device) -> "TransformersTextClassifier":
        self.model.to(device)
        return self


class EnsembleClassifier:
    """Several classifiers over the same classes (a forward and a backward one, as in the ULMFiT
    paper's bidirectional result): the probabilities are averaged. Saved as ``ensemble.json``
    listing the member folders (relative to it)."""

    def __init__(self, members: list):
        if not members:
            raise UlmfitError("an ensemble needs at least one classifier")
        first = members[0]
        for m in members[1:]:
            if list(m.classes) != list(first.classes) or m.multi_label != first.multi_label:
                raise UlmfitError(f"ensemble members disagree on the classes: {first.classes} vs {m.classes}")
        self.members, self.classes = members, list(first.classes)
        self.multi_label, self.threshold = first.multi_label, first.threshold

    def encode(self, texts: list[str]) -> list[str]:
        return list(texts)  # each member tokenizes (a backward member reverses)

    def predict_proba(self, texts, bs: int = 64, ids: list | None = None) -> np.ndarray:
        texts = ids if texts is None else texts
        return np.mean([m.predict_proba(list(texts), bs=bs) for m in self.members], axis=0)

    def predict(self, texts: list[str], bs: int = 64, top_k: int = 1) -> list[dict]:
        return prediction_rows(self, texts, self.predict_proba(texts, bs=bs), top_k)

    def to(self, device) -> "EnsembleClassifier":
        for m in self.members:
            m.to(device)
        return self

    @staticmethod
    def save(folder: str | Path, members: list[str | Path]) -> Path:
        d = Path(folder)
        d.mkdir(parents=True, exist_ok=True)
        rel = [os.path.relpath(Path(m).resolve(), d.resolve()) for m in members]
        atomic_write_text(d / ENSEMBLE_NAME, json.dumps({"members": rel}, indent=1))
        return d

    @classmethod
    def load(cls, folder: str | Path) -> "EnsembleClassifier":
        d = Path(folder)
        try:
            rel = json.loads((d / ENSEMBLE_NAME).read_text(encoding="utf-8"))["members"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UlmfitError(f"{d / ENSEMBLE_NAME} is not an ensemble file ({e})") from None
        return cls([_load_classifier(d / r) for r in rel])


def resolve_device(device: str | None) -> torch.device:
    """``auto`` (or None): the first GPU when torch sees one, else the CPU; ``cpu``, ``cuda``,
    ``cuda:N`` as given, with a clear error when that device is not here."""
    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise UlmfitError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise UlmfitError(f"unsupported device {device!r}: use auto, cpu, cuda or cuda:N")
    if dev.type == "cuda" and (not torch.cuda.is_available() or (dev.index or 0) >= torch.cuda.device_count()):
        raise UlmfitError(f"device {device!r} is not available here ({torch.cuda.device_count()} CUDA GPUs); "
                          "use --device cpu")
    return dev


def load_classifier(folder: str | Path, device: str | None = None):
    """Any classifier folder ulmfit writes: an AWD-LSTM run, a transformers run (or its model/),
    an exported folder, or an ensemble (``ensemble.json``); on the CPU, or on ``device`` (see
    :func:`resolve_device`) when given."""
    clf = _load_classifier(folder)
    return clf.to(resolve_device(device)) if device else clf


def _load_classifier(folder: str | Path):
    d = Path(folder)
    if (d / ENSEMBLE_NAME).is_file():
        return EnsembleClassifier.load(d)
    for cand in (d, d / "model"):
        if (cand / "ulmfit_head.json").exists():
            return TransformersTextClassifier.load(cand)
    from ulmfit.hub import is_exported, load_exported_classifier

    if is_exported(d) and not (d / CONFIG_NAME).is_file():  # an `ulmfit export` / Hub folder
        return load_exported_classifier(d)
    return TextClassifier.load(d)
