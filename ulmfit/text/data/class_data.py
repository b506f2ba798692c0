"""Classification batches: sort-ish batching with front padding (after fastai's ``SortedDL`` and
``pad_input_chunk``).

Training (``shuffle=True``): texts are shuffled, cut into chunks of ~50 batches, sorted by length
inside each chunk, cut into batches; the batches are shuffled and the one with the longest text
goes first (so an out-of-memory error shows up at once). Evaluation (``shuffle=False``): all texts
sorted by length, longest first; ``order`` holds the input index of every row in yield order and
``restore(preds)`` puts per-row outputs back into input order.

Each batch is padded with ``pad_id`` at the FRONT up to a multiple of ``bptt``, so BPT3C chunks
line up and the last token of every row is real text. ``max_tokens`` caps what a text gives: at
most its LAST ``max_tokens`` tokens, the end that BPT3C pools over, cut at a chunk boundary of the
whole text so the pooled chunks are the ones the whole text gives (``tail_ids``); one huge
document then costs no more than a long one. Under ``world_size`` processes each rank takes every
``world_size``-th batch; in training, ranks with fewer batches wrap around so all ranks yield the
same number of batches.
"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch

from ulmfit.errors import UlmfitError
from ulmfit.text.tokenize.special import PAD_ID


def tail_ids(ids: np.ndarray, max_tokens: int | None, bptt: int = 1) -> np.ndarray:
    """At most the last ``max_tokens`` of ``ids``, dropping whole ``bptt`` chunks from the front
    (a text starts on a chunk boundary, so the chunks left are laid out as in the whole text)."""
    if not max_tokens or len(ids) <= max_tokens:
        return ids
    bptt = bptt if bptt and bptt <= max_tokens else 1
    drop = -(-(len(ids) - max_tokens) // bptt) * bptt
    return ids[drop:]


def sortish_batches(lengths: np.ndarray, bs: int, rng: np.random.Generator,
                    chunk_batches: int = 50) -> list[np.ndarray]:
    """Shuffled indices cut into chunks of ``chunk_batches`` batches, sorted by length (longest
    first) inside each chunk, cut into batches; batches shuffled, the longest one first. Batches
    hold texts of similar length, so little padding, while every epoch sees a new order."""
    idx = rng.permutation(len(lengths))
    size = bs * chunk_batches
    batches = []
    for c in range(0, len(idx), size):
        ch = idx[c:c + size]
        ch = ch[np.argsort(-lengths[ch], kind="stable")]
        batches += [ch[i:i + bs] for i in range(0, len(ch), bs)]
    batches = [batches[i] for i in rng.permutation(len(batches))]
    longest = int(np.argmax([lengths[b].max() for b in batches]))
    batches.insert(0, batches.pop(longest))
    return batches


class ClassificationBatches:
    """Iterable of ``(x, y)``: x LongTensor ``(bs, L)`` front-padded; y LongTensor ``(bs,)``, or
    FloatTensor ``(bs, n_classes)`` for multi-label (2-D labels), or None without labels."""

    def __init__(self, ids: Sequence, labels=None, bs: int = 64, bptt: int = 72,
                 pad_id: int = PAD_ID, shuffle: bool = True, seed: int = 0,
                 max_tokens: int | None = None, rank: int = 0, world_size: int = 1,
                 n_classes: int | None = None, chunk_batches: int = 50):
        if len(ids) == 0:
            raise UlmfitError("no texts to batch: the dataset is empty after filtering")
        if labels is not None and len(labels) != len(ids):
            raise UlmfitError(f"{len(ids)} texts but {len(labels)} labels")
        if not 0 <= rank < world_size:
            raise UlmfitError(f"rank {rank} is not in 0..{world_size - 1} (world_size)")
        self.ids = [tail_ids(np.asarray(a, dtype=np.int64), max_tokens, bptt) for a in ids]
        self.lengths = np.array([len(a) for a in self.ids])
        self.labels = None if labels is None else np.asarray(labels)
        self.multi_label = self.labels is not None and self.labels.ndim == 2
        if self.multi_label and n_classes is not None and self.labels.shape[1] != n_classes:
            raise UlmfitError(f"labels have {self.labels.shape[1]} columns, n_classes={n_classes}")
        self.bs, self.bptt, self.pad_id, self.shuffle, self.seed = bs, bptt, pad_id, shuffle, seed
        self.rank, self.world_size, self.chunk = rank, world_size, chunk_batches
        self.epoch = 0
        self.order = np.zeros(0, np.int64)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[np.ndarray]:
        if not self.shuffle:
            idx = np.argsort(-self.lengths, kind="stable")
            return [idx[i:i + self.bs] for i in range(0, len(idx), self.bs)]
        return sortish_batches(self.lengths, self.bs, np.random.default_rng([self.seed, self.epoch]), self.chunk)

    def _local(self) -> list[np.ndarray]:
        batches = self._batches()
        mine = batches[self.rank::self.world_size]
        if self.shuffle and self.world_size > 1:
            per_rank = math.ceil(len(batches) / self.world_size)
            while len(mine) < per_rank:
                mine.append(batches[(len(mine) * self.world_size + self.rank) % len(batches)])
        return mine

    def __len__(self) -> int:
        nb = math.ceil(len(self.ids) / self.bs)
        if self.shuffle:
            return math.ceil(nb / self.world_size)
        return len(range(self.rank, nb, self.world_size))

    def collate(self, idx: np.ndarray):
        rows = [self.ids[i] for i in idx]
        L = max(1, int(max(len(r) for r in rows)))
        L = math.ceil(L / self.bptt) * self.bptt if self.bptt else L
        x = np.full((len(rows), L), self.pad_id, np.int64)
        for j, r in enumerate(rows):
            if len(r):
                x[j, L - len(r):] = r
        y = None
        if self.labels is not None:
            y = torch.from_numpy(self.labels[idx].astype(np.float32 if self.multi_label
                                                         else np.int64))
        return torch.from_numpy(x), y

    def __iter__(self):
        local = self._local()
        self.order = np.concatenate(local) if local else np.zeros(0, np.int64)
        for b in local:
            yield self.collate(b)
        self.epoch += 1

    def restore(self, preds):
        """Rows of ``preds`` (in yield order of the last pass) back in input order."""
        inv = np.argsort(self.order, kind="stable")
        return preds[torch.as_tensor(inv) if torch.is_tensor(preds) else inv]
