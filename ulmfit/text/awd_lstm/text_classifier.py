"""A trained text classifier as one object: model + tokenizer + classes, saved without pickles.

`TextClassifier.predict(texts)` tokenizes in one batch call, sorts by length, runs batches
under inference mode and puts the results back in input order, so prediction is fast and
independent of the batch size.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ulmfit.core.checkpoint import atomic_write_text, load_weights, save_weights
from ulmfit.core.predictions import prediction_rows
from ulmfit.core.threads import one_thread, predict_workers
from ulmfit.errors import UlmfitError
from ulmfit.forked import fork_each
from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier, check_head_settings
from ulmfit.text.awd_lstm.model import AWDLSTMConfig
from ulmfit.text.awd_lstm.quantize import quantize_int8
from ulmfit.text.data.cache import TokenCache
from ulmfit.text.data.class_data import ClassificationBatches
from ulmfit.text.tokenize.tokenizer import TextTokenizer

CONFIG_NAME = "classifier_config.json"
WEIGHTS_NAME = "model.safetensors"


@dataclass
class TextClassifier:
    model: AWDLSTMClassifier
    tokenizer: TextTokenizer
    classes: list[str]
    multi_label: bool = False
    threshold: float = 0.5
    backwards: bool = False  # reads every text's tokens in reverse (the backward half of an ensemble)
    autocast: torch.dtype | None = None  # prediction under autocast to this dtype (``bf16()``); not saved

    # ---- persistence ------------------------------------------------------------------------
    def config_dict(self) -> dict:
        m = self.model
        return {"model_type": "ulmfit-awd-lstm-classifier", "awd_lstm": m.config.to_dict(),
                "n_classes": len(self.classes), "classes": self.classes, "multi_label": self.multi_label,
                "threshold": self.threshold, "bptt": m.bptt, "max_len": m.max_len,
                "max_tokens": m.max_tokens,
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
        check_head_settings(c, d / CONFIG_NAME)
        tok = TextTokenizer.load(d)
        cfg = AWDLSTMConfig.from_dict(c["awd_lstm"])
        if len(tok) != cfg.vocab_size:
            raise UlmfitError(f"{d}: the tokenizer has {len(tok)} words but the model was built for "
                              f"{cfg.vocab_size}; the vocabulary does not match the weights")
        model = AWDLSTMClassifier(cfg, c["n_classes"], c["bptt"], c["max_len"], c["head_hidden"], c["head_ps"],
                                  c.get("max_tokens"))
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
    def predict_proba(self, texts: list[str], bs: int = 64, ids: list | None = None,
                      workers: int | None = None) -> np.ndarray:
        """Probabilities (n_texts, n_classes) in input order. On the CPU the batches are shared out
        over ``workers`` processes of one thread each (default ``predict_workers``: one per thread
        torch may use, for an input of a few batches per process; 1: this process only); each
        process takes every ``workers``-th batch of the same length-sorted batches."""
        if not len(texts if ids is None else ids):
            return np.zeros((0, len(self.classes)), np.float32)
        ids = self.encode(texts) if ids is None else ids
        self.model.eval()
        device = next(self.model.parameters()).device
        n = predict_workers(len(ids), bs, device, workers)
        out = np.zeros((len(ids), len(self.classes)), np.float32)
        for order, probs in fork_each(lambda rank: self._proba_part(ids, bs, device, rank, n), n):
            out[order] = probs
        return out

    def _proba_part(self, ids, bs: int, device, rank: int, world: int) -> tuple[np.ndarray, np.ndarray]:
        """(input rows, probabilities) of every ``world``-th batch from ``rank``; one thread when
        the batches are shared out."""
        batches = ClassificationBatches(ids, None, bs=bs, bptt=self.model.bptt, pad_id=self.tokenizer.pad_id,
                                        shuffle=False, max_tokens=self.model.max_tokens, rank=rank, world_size=world)
        outs = []
        low = self.autocast is not None
        with one_thread(world > 1), torch.autocast(device.type, dtype=self.autocast or torch.bfloat16, enabled=low):
            for x, _ in batches:
                logits = self.model(x.to(device)).float()
                outs.append((torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)).cpu())
        probs = torch.cat(outs).numpy() if outs else np.zeros((0, len(self.classes)), np.float32)
        return batches.order, probs

    def predict(self, texts: list[str], bs: int = 64, top_k: int = 1) -> list[dict]:
        """One dict per text: label (or labels for multi-label), probability, top_k list."""
        return prediction_rows(self, texts, self.predict_proba(texts, bs=bs), top_k)

    def int8(self) -> "TextClassifier":
        """A copy for CPU prediction with int8 LSTM weights (``quantize.quantize_int8``)."""
        return dataclasses.replace(self, model=quantize_int8(self.model))

    def bf16(self) -> "TextClassifier":
        """A copy that predicts under bf16 autocast (the LSTMs and matmuls in bf16, softmax in fp32):
        on CPUs with AVX512-BF16 or AMX the fastest reading of long documents, and closer to fp32 than
        int8; int8 is faster on short texts (docs/benchmarks.md)."""
        return dataclasses.replace(self, autocast=torch.bfloat16)

    def to(self, device) -> "TextClassifier":
        self.model.to(device)
        return self
