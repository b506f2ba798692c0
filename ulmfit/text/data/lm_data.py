"""Language-model data: token ids in a memory-mapped file, served as ``bs`` contiguous streams.

``numericalize_to_memmap`` streams texts through the tokenizer in chunks and appends the ids to a
raw file (uint16 when the vocab fits, else uint32), so memory holds one chunk at a time.

``LMStream`` (after fastai's ``LMDataLoader`` and AWD-LSTM's ``get_batch``): each epoch the
documents are shuffled (seeded by ``seed + epoch``), virtually concatenated (never copied), and
cut into ``bs * world_size`` contiguous streams; rank ``r`` reads streams ``r*bs .. (r+1)*bs-1``,
so each row of consecutive batches continues the same running text and an RNN's hidden state can
carry over. Sequence lengths follow AWD-LSTM (``bptt`` with p=0.95 else ``bptt/2``, normal
jitter std 5, at least 5), drawn from an RNG shared by all ranks, so every rank yields the same
number of batches. ``backwards=True`` reads the whole stream in reverse token order.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from ulmfit.errors import UlmfitError


def numericalize_to_memmap(tokenizer, texts: Iterable[str], path, chunk: int = 2000,
                           dtype=None) -> tuple[np.memmap, np.ndarray]:
    """Tokenize ``texts`` (any iterable, streamed in chunks) into the raw file ``path``.

    Returns (ids memmap, doc_offsets) with ``doc_offsets[i]:doc_offsets[i+1]`` the ids of text i.
    Also writes ``<path>.json`` (dtype, n_tokens) and ``<path>.offsets.npy``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = np.dtype(dtype or tokenizer.id_dtype)
    lengths: list[np.ndarray] = []
    batch: list[str] = []
    with open(path, "wb") as f:
        def flush():
            ids, lens = tokenizer.encode_flat(batch)
            f.write(ids.astype(dtype, copy=False).tobytes())
            lengths.append(lens)
            batch.clear()
        for t in texts:
            batch.append(t)
            if len(batch) >= chunk:
                flush()
        if batch:
            flush()
    lens = np.concatenate(lengths) if lengths else np.zeros(0, np.int64)
    offsets = np.concatenate(([0], np.cumsum(lens))).astype(np.int64)
    if offsets[-1] == 0:
        raise UlmfitError(f"no tokens to write to {path}: the corpus is empty")
    np.save(str(path) + ".offsets.npy", offsets)
    Path(str(path) + ".json").write_text(json.dumps({"dtype": dtype.name,
                                                     "n_tokens": int(offsets[-1])}))
    return np.memmap(path, dtype=dtype, mode="r", shape=(int(offsets[-1]),)), offsets


def load_memmap(path) -> tuple[np.memmap, np.ndarray]:
    """Open ids written by ``numericalize_to_memmap``."""
    meta = json.loads(Path(str(path) + ".json").read_text())
    ids = np.memmap(path, dtype=np.dtype(meta["dtype"]), mode="r", shape=(meta["n_tokens"],))
    return ids, np.load(str(path) + ".offsets.npy")


class LMStream:
    """Iterable of ``(x, y)`` LongTensors ``(bs, seq_len)``, ``y`` = ``x`` shifted by one."""

    def __init__(self, ids, doc_offsets=None, bs: int = 64, bptt: int = 70, shuffle: bool = True,
                 seed: int = 0, backwards: bool = False, variable_bptt: bool = True,
                 rank: int = 0, world_size: int = 1, min_seq_len: int = 5):
        self.ids = ids
        n = len(ids)
        self.offsets = np.asarray(doc_offsets if doc_offsets is not None else [0, n], np.int64)
        if self.offsets[-1] != n:
            raise UlmfitError(f"doc_offsets end at {self.offsets[-1]} but there are {n} ids")
        if not 0 <= rank < world_size:
            raise UlmfitError(f"rank {rank} is not in 0..{world_size - 1} (world_size)")
        self.bs, self.bptt, self.shuffle, self.seed = bs, bptt, shuffle, seed
        self.backwards, self.variable_bptt = backwards, variable_bptt
        self.rank, self.world_size, self.min_seq_len = rank, world_size, min_seq_len
        self.lengths = np.diff(self.offsets)
        self.stream_len = n // (bs * world_size)
        if self.stream_len < 2:
            raise UlmfitError(f"{n} tokens are too few for bs={bs} x world_size={world_size} "
                              "streams; lower bs")
        self.epoch = 0
        self.seq_len = bptt

    def set_epoch(self, epoch: int) -> None:
        """Reseed the document shuffle (``seed + epoch``): deterministic, resumable order."""
        self.epoch = epoch

    def seq_lens(self, epoch: int | None = None) -> list[int]:
        """The sequence lengths of one epoch (identical on every rank)."""
        rng = np.random.default_rng([self.seed, self.epoch if epoch is None else epoch, 1])
        total, out = self.stream_len - 1, []
        while total > 0:
            sl = self.bptt
            if self.variable_bptt:
                b = self.bptt if rng.random() < 0.95 else self.bptt / 2
                sl = max(self.min_seq_len, int(rng.normal(b, 5)))
            sl = min(sl, total)
            out.append(sl)
            total -= sl
        return out

    def __len__(self) -> int:
        return len(self.seq_lens())

    def _order(self):
        perm = np.arange(len(self.lengths))
        if self.shuffle:
            np.random.default_rng([self.seed, self.epoch, 0]).shuffle(perm)
        cum = np.concatenate(([0], np.cumsum(self.lengths[perm])))
        return perm, cum

    def _gather(self, perm, cum, start: int, length: int) -> np.ndarray:
        """Tokens ``[start, start+length)`` of the (shuffled, maybe reversed) virtual stream."""
        n = int(cum[-1])
        if self.backwards:
            start = n - start - length
        out, pos, need = [], start, length
        i = int(np.searchsorted(cum, pos, side="right")) - 1
        while need > 0:
            d = perm[i]
            off = pos - int(cum[i])
            take = min(need, int(self.lengths[d]) - off)
            if take > 0:
                a = int(self.offsets[d]) + off
                out.append(np.asarray(self.ids[a:a + take]))
                pos, need = pos + take, need - take
            i += 1
        arr = np.concatenate(out) if len(out) > 1 else out[0]
        return arr[::-1] if self.backwards else arr

    def __iter__(self):
        perm, cum = self._order()
        first = self.rank * self.bs
        starts = [(first + j) * self.stream_len for j in range(self.bs)]
        t = 0
        for sl in self.seq_lens():
            self.seq_len = sl
            rows = np.stack([self._gather(perm, cum, s + t, sl + 1) for s in starts])
            rows = torch.from_numpy(rows.astype(np.int64))
            yield rows[:, :-1], rows[:, 1:]
            t += sl
        self.epoch += 1  # a plain second pass gets a new shuffle; set_epoch overrides
