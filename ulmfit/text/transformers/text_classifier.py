"""A transformers classifier folder behind the same predict interface as the AWD-LSTM's."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ulmfit.core.predictions import prediction_rows
from ulmfit.text.transformers.backbone import load_transformer_classifier


class TransformersTextClassifier:
    """A transformers classifier folder behind the same predict interface as TextClassifier."""

    multi_label = False
    threshold = 0.5

    def __init__(self, model):
        self.model = model
        self.classes = [str(c) for c in model.labels]

    @classmethod
    def load(cls, folder: str | Path) -> "TransformersTextClassifier":
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
