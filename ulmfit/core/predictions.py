"""What every classifier's ``predict`` returns, and an ensemble that averages classifiers.

Model-agnostic: a classifier here is anything with ``classes``, ``multi_label``, ``threshold``
and ``predict_proba(texts, bs)`` (the AWD-LSTM, a transformers backbone, an ensemble).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ulmfit.core.checkpoint import atomic_write_text
from ulmfit.errors import UlmfitError

ENSEMBLE_NAME = "ensemble.json"


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


class EnsembleClassifier:
    """Several classifiers over the same classes (a forward and a backward one, as in the ULMFiT
    paper's bidirectional result): the probabilities are averaged. Saved as ``ensemble.json``
    listing the member folders (relative to it)."""

    def __init__(self, members: list):
        if not members:
            raise UlmfitError("an ensemble needs at least one classifier")
        first = members[0]
        for k, m in enumerate(members[1:], 2):
            if list(m.classes) != list(first.classes):
                raise UlmfitError(f"ensemble members disagree on the classes: member 1 has {list(first.classes)}, "
                                  f"member {k} {list(m.classes)}")
            if m.multi_label != first.multi_label:
                raise UlmfitError(f"ensemble members disagree: member 1 is {'' if first.multi_label else 'not '}"
                                  f"multi-label, member {k} is {'' if m.multi_label else 'not '}multi-label")
        self.members, self.classes = members, list(first.classes)
        self.multi_label, self.threshold = first.multi_label, first.threshold

    def encode(self, texts: list[str]) -> list[str]:
        return list(texts)  # each member tokenizes (a backward member reverses)

    def predict_proba(self, texts, bs: int = 64, ids: list | None = None) -> np.ndarray:
        texts = ids if texts is None else texts
        return np.mean([m.predict_proba(list(texts), bs=bs) for m in self.members], axis=0)

    def predict(self, texts: list[str], bs: int = 64, top_k: int = 1) -> list[dict]:
        return prediction_rows(self, texts, self.predict_proba(texts, bs=bs), top_k)

    def int8(self) -> "EnsembleClassifier":
        """The same ensemble with every member's int8 CPU copy (members are AWD-LSTM classifiers:
        only that backend makes ensembles)."""
        return EnsembleClassifier([m.int8() for m in self.members])

    def bf16(self) -> "EnsembleClassifier":
        """The same ensemble with every member predicting under bf16 autocast."""
        return EnsembleClassifier([m.bf16() for m in self.members])

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

    @staticmethod
    def member_dirs(folder: str | Path) -> list[Path]:
        """The member folders listed in ``folder``'s ensemble file."""
        d = Path(folder)
        try:
            rel = json.loads((d / ENSEMBLE_NAME).read_text(encoding="utf-8"))["members"]
            return [d / r for r in rel]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UlmfitError(f"{d / ENSEMBLE_NAME} is not an ensemble file ({e})") from None

    @classmethod
    def load(cls, folder: str | Path, load_member: Callable) -> "EnsembleClassifier":
        """The ensemble saved in ``folder``; ``load_member(path)`` loads one member folder."""
        return cls([load_member(m) for m in cls.member_dirs(folder)])
