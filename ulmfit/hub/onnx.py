"""ONNX export of an AWD-LSTM classifier for serving (``ulmfit export --onnx``).

The training-time forward (BPT3C, :mod:`ulmfit.text.awd_lstm.classifier`) loops over bptt chunks in Python
and branches on the data, which a graph exporter would freeze to one input length. For inference
it is equivalent to one pass of each LSTM over the whole text from a zero state: BPT3C starts
every text on a chunk boundary with a zero hidden state and carries the state across chunks, so
chunking changes nothing in eval mode. What BPT3C does keep from the chunking, the pooling window
(only the last ``ceil(max_len / bptt)`` chunks of a long text are pooled), is a mask here.

:class:`OnnxClassifier` re-expresses the classifier that way with plain ``nn.LSTM`` calls (the
ONNX ``LSTM`` op), reusing the trained modules and weights, so the graph takes any batch size and
length. Inputs: ``input_ids`` and ``attention_mask`` (batch, seq), int64, padded on either side.
Outputs: ``logits`` and ``probabilities`` (softmax, or sigmoid for multi-label models).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm.classifier import masked_concat_pool

__all__ = ["OnnxClassifier", "export_onnx", "pad_batch", "OnnxPredictor"]

INPUTS, OUTPUTS = ["input_ids", "attention_mask"], ["logits", "probabilities"]


class OnnxClassifier(nn.Module):
    """An :class:`~ulmfit.text.awd_lstm.classifier.AWDLSTMClassifier` in eval mode, without Python loops
    over chunks: same outputs, traceable with dynamic batch and length."""

    def __init__(self, classifier: nn.Module, multi_label: bool = False):
        super().__init__()
        if classifier.config.bidir:
            raise UlmfitError("ONNX export supports forward (unidirectional) AWD-LSTM classifiers only; "
                              "this one has bidir=True")
        self.clf = classifier
        self.multi_label = multi_label
        self.pad_id = int(classifier.config.pad_id)
        self.bptt = int(classifier.bptt)
        self.keep_chunks = math.ceil(classifier.max_len / classifier.bptt) if classifier.max_len else 0

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        mask = attention_mask > 0
        width = input_ids.size(1)
        pos = torch.arange(width, device=input_ids.device).unsqueeze(0)
        lengths = mask.sum(1, keepdim=True)
        first = (mask.long() * (width - pos)).argmax(1, keepdim=True)  # first real position
        src = (first + pos).clamp(max=width - 1)
        real = pos < lengths
        ids = torch.where(real, input_ids.gather(1, src), torch.full_like(input_ids, self.pad_id))
        enc = self.clf.encoder
        x = F.embedding(ids, enc.emb.weight, self.pad_id)
        for rnn in enc.rnns:
            x, _ = rnn.module(x)  # zero initial state, raw weights (eval mode: no DropConnect)
        if self.keep_chunks:  # BPT3C pools only over the last keep_chunks chunks of the text
            n_chunks = torch.div(lengths + self.bptt - 1, self.bptt, rounding_mode="floor")
            start = (n_chunks - self.keep_chunks).clamp(min=0) * self.bptt
            real = real & (pos >= start)
        logits = self.clf.head(masked_concat_pool(x.float(), real))
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, -1)
        return logits, probs


def export_onnx(classifier: nn.Module, path: str | Path, multi_label: bool = False, opset: int = 17) -> Path:
    """Write ``classifier`` (an AWDLSTMClassifier) to ``path`` as ONNX with dynamic batch and length."""
    path = Path(path)
    wrapper = OnnxClassifier(classifier, multi_label).eval()
    ids = torch.full((2, 30), 5, dtype=torch.long)
    mask = torch.ones_like(ids)
    mask[1, 20:] = 0
    tmp = path.with_name(path.name + ".tmp")
    with torch.no_grad(), warnings.catch_warnings():
        # the tracer warns about Python-side shape checks and about LSTMs with a batch-dependent
        # initial state; this graph has no state inputs (zeros), so any batch size is valid
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapper, (ids, mask), str(tmp), input_names=INPUTS, output_names=OUTPUTS,
                          dynamic_axes={n: {0: "batch", 1: "sequence"} for n in INPUTS}
                          | {n: {0: "batch"} for n in OUTPUTS},
                          opset_version=opset, dynamo=False)
    try:
        import onnx

        onnx.checker.check_model(str(tmp))
    except ImportError:
        pass
    tmp.replace(path)
    return path


def pad_batch(seqs: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad id arrays into (input_ids, attention_mask), int64."""
    width = max(1, max(len(s) for s in seqs))
    ids = np.full((len(seqs), width), pad_id, np.int64)
    mask = np.zeros((len(seqs), width), np.int64)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = s
        mask[i, :len(s)] = 1
    return ids, mask


class OnnxPredictor:
    """Probabilities from ``model.onnx`` with onnxruntime, texts encoded by the ulmfit tokenizer.

    Texts are sorted by length and batched (like ``TextClassifier.predict_proba``); results come
    back in input order.
    """

    def __init__(self, onnx_path: str | Path, tokenizer, threads: int | None = None):
        try:
            import onnxruntime as ort
        except ImportError:
            raise UlmfitError("onnxruntime is not installed: pip install onnxruntime") from None
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), opts, providers=["CPUExecutionProvider"])
        self.tokenizer = tokenizer

    def predict_proba(self, texts: list[str], bs: int = 64) -> np.ndarray:
        ids, lengths = self.tokenizer.encode_flat(list(texts))
        seqs = np.split(ids.astype(np.int64), np.cumsum(lengths)[:-1])
        order = np.argsort(-lengths, kind="stable")
        out = [None] * len(seqs)
        for s in range(0, len(order), bs):
            idx = order[s:s + bs]
            x, m = pad_batch([seqs[i] for i in idx], self.tokenizer.pad_id)
            probs = self.session.run(["probabilities"], {"input_ids": x, "attention_mask": m})[0]
            for j, i in enumerate(idx):
                out[i] = probs[j]
        return np.stack(out)
