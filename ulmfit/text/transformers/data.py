"""Batches for transformers backbones: text checks, label maps, tokenized loaders, metrics.

Texts are tokenized once with the checkpoint's own (fast) tokenizer, batched by length (training:
fastai-style sort-ish batches, `SortishBatchSampler`; evaluation: longest first) so a batch of
short questions is not padded to its one long outlier, and padded per batch by the transformers
data collators (`DataCollatorWithPadding` for classification,
`DataCollatorForLanguageModeling` for masked- or causal-LM fine-tuning). A batch is a dict of
tensors; `split_batch` turns it into `(inputs, targets)` for the core trainer.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from ulmfit.errors import UlmfitError
from ulmfit.text.choices import LONG_DOCS
from ulmfit.text.data.class_data import sortish_batches


def check_texts(texts, what: str) -> list[str]:
    """Return `texts` as a list of str, or raise naming the first bad row of split `what`."""
    if texts is None:
        raise UlmfitError(f"{what}: no texts given")
    out = list(texts)
    if not out:
        raise UlmfitError(f"{what}: the list of texts is empty")
    for i, t in enumerate(out):
        if not isinstance(t, str):
            raise UlmfitError(f"{what}: row {i} is {type(t).__name__}, not text")
        if not t.strip():
            raise UlmfitError(f"{what}: row {i} is an empty text")
    return out


class LabelMap:
    """Sorted class names <-> ids, built from the training labels."""

    def __init__(self, labels: Sequence):
        uniq = sorted({_plain(x) for x in labels}, key=lambda v: (str(type(v)), v))
        if len(uniq) < 2:
            raise UlmfitError(f"training labels need at least 2 classes, found {uniq}")
        self.names = uniq
        self.index = {v: i for i, v in enumerate(uniq)}

    def encode(self, labels: Sequence, what: str) -> list[int]:
        out = []
        for i, x in enumerate(labels):
            v = _plain(x)
            if v not in self.index:
                raise UlmfitError(
                    f"{what}: row {i} has label {v!r}, unknown to the training labels {self.names}")
            out.append(self.index[v])
        return out

    def id2label(self) -> dict[int, str]:
        return {i: str(v) for i, v in enumerate(self.names)}


def _plain(x):
    """numpy scalars -> python values, so 3 and np.int64(3) are one label."""
    return x.item() if hasattr(x, "item") else x


def encode(tokenizer, texts: list[str], max_length: int, long_docs: str = "truncate"):
    """Token ids of `texts` as rows of dicts, and the text each row comes from.

    `truncate`: one row per text, its first `max_length` tokens. `windows`: a long text becomes
    consecutive windows of `max_length` tokens (each with the checkpoint's special tokens), so
    nothing is cut; several rows then share one text index."""
    if max_length < 2:
        raise UlmfitError(f"max_length must be >= 2, got {max_length}")
    if long_docs not in LONG_DOCS:
        raise UlmfitError(f"long_docs {long_docs!r} is not one of {', '.join(LONG_DOCS)}")
    windows = long_docs == "windows"
    if windows and not getattr(tokenizer, "is_fast", False):
        raise UlmfitError("long_docs: windows needs a fast (Rust) tokenizer; this checkpoint's is a slow one")
    enc = tokenizer(texts, truncation=True, max_length=max_length, return_overflowing_tokens=windows)
    keys = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
    n = len(enc["input_ids"])
    rows = [{k: enc[k][i] for k in keys} for i in range(n)]
    doc = list(enc["overflow_to_sample_mapping"]) if windows else list(range(n))
    return rows, doc


class Encoded(Dataset):
    """Token ids (and optional integer labels) of a list of texts; with `long_docs="windows"` one
    row per window, each carrying its text's label (`doc[i]` is row i's text)."""

    def __init__(self, tokenizer, texts: list[str], max_length: int, labels: list[int] | None = None,
                 long_docs: str = "truncate"):
        self.rows, self.doc = encode(tokenizer, texts, max_length, long_docs)
        if labels is not None:
            if len(labels) != len(texts):
                raise UlmfitError(f"{len(texts)} texts but {len(labels)} labels")
            for r, d in zip(self.rows, self.doc):
                r["labels"] = int(labels[d])

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        return dict(self.rows[i])


class SortishBatchSampler(torch.utils.data.Sampler):
    """Training batches of similar-length texts in a new order every epoch (`sortish_batches`).

    The order depends on (seed, epoch) only: the trainer's `set_epoch` picks the epoch (resume);
    without it each pass counts one up (so ranks under accelerate stay in step)."""

    drop_last = False

    def __init__(self, lengths: Sequence[int], batch_size: int, seed: int = 42):
        super().__init__()
        self.lengths = np.asarray(lengths)
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-len(self.lengths) // self.batch_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        for b in sortish_batches(self.lengths, self.batch_size, rng):
            yield b.tolist()


def length_batched_loader(ds: "Encoded", bs: int, shuffle: bool, seed: int, collate) -> DataLoader:
    """Training: sort-ish batches of similar lengths, a new order every epoch; else longest first."""
    lengths = [len(r["input_ids"]) for r in ds.rows]
    if shuffle:
        return DataLoader(ds, batch_sampler=SortishBatchSampler(lengths, bs, seed), collate_fn=collate)
    order = sorted(range(len(ds)), key=lambda i: -lengths[i])  # metrics do not depend on the order
    return DataLoader(ds, batch_size=bs, sampler=order, collate_fn=collate)


def classification_loader(tokenizer, texts, labels, max_length: int, bs: int, shuffle: bool,
                          seed: int = 42, long_docs: str = "truncate") -> DataLoader:
    from transformers import DataCollatorWithPadding

    ds = Encoded(tokenizer, texts, max_length, labels, long_docs)
    return length_batched_loader(ds, bs, shuffle, seed, DataCollatorWithPadding(tokenizer))


def lm_loaders(tokenizer, texts, valid_texts, mlm: bool, max_length: int, bs: int,
               mlm_probability: float = 0.15, seed: int = 42):
    """Train loader (fresh masks every epoch) and a fixed list of masked valid batches."""
    from transformers import DataCollatorForLanguageModeling

    if not 0 < mlm_probability < 1:
        raise UlmfitError(f"mlm_probability must be in (0, 1), got {mlm_probability}")
    coll = DataCollatorForLanguageModeling(tokenizer, mlm=mlm, mlm_probability=mlm_probability if mlm else None)
    train = length_batched_loader(Encoded(tokenizer, texts, max_length), bs, True, seed, coll)
    valid = None
    if valid_texts:
        vcoll = DataCollatorForLanguageModeling(tokenizer, mlm=mlm, seed=seed,
                                                mlm_probability=mlm_probability if mlm else None)
        vds = Encoded(tokenizer, valid_texts, max_length)
        valid = [vcoll([vds[j] for j in range(i, min(i + bs, len(vds)))]) for i in range(0, len(vds), bs)]
    return train, valid


def split_batch(batch):
    """A collated dict -> (model inputs, labels)."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    return inputs, batch["labels"]


def accuracy(preds: np.ndarray, targets: np.ndarray) -> float:
    from sklearn.metrics import accuracy_score

    return float(accuracy_score(targets, preds))


def macro_f1(preds: np.ndarray, targets: np.ndarray) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(targets, preds, average="macro", zero_division=0))


METRICS = {"accuracy": accuracy, "macro_f1": macro_f1}


def text_metrics(probs: torch.Tensor, targets: Sequence[int], prefix: str) -> dict:
    """Loss (mean negative log-probability of the true class) and METRICS from per-text probabilities."""
    t = torch.as_tensor(list(targets))
    p = probs.float().clamp_min(1e-12)
    out = {f"{prefix}_loss": float(-p[torch.arange(len(t)), t].log().mean())}
    preds = p.argmax(-1).numpy()
    out.update({f"{prefix}_{k}": fn(preds, t.numpy()) for k, fn in METRICS.items()})
    return out
