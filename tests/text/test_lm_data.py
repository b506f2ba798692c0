"""LM streams: contiguity across batches and ranks, shuffling, variable bptt, memmap, backwards."""
import numpy as np
import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.text.data.lm_data import LMStream, load_memmap, numericalize_to_memmap
from ulmfit.text.tokenize.tokenizer import TextTokenizer


def _docs(n_docs=20, size=50):
    ids = np.arange(n_docs * size, dtype=np.int64)  # every token unique: order is checkable
    return ids, np.arange(0, n_docs * size + 1, size)


def _rows(stream):
    batches = list(stream)
    xs = torch.cat([x for x, _ in batches], 1)
    ys = torch.cat([y for _, y in batches], 1)
    return batches, xs, ys


def test_contiguous_rows_and_shift():
    ids, offs = _docs()
    s = LMStream(ids, offs, bs=4, bptt=10, shuffle=False, variable_bptt=False)
    batches, xs, ys = _rows(s)
    assert all(x.shape[0] == 4 for x, _ in batches)
    assert len(batches) == len(s)
    assert torch.equal(xs[:, 1:], ys[:, :-1])  # y is x shifted; rows run on across batches
    assert torch.equal(xs[0], torch.arange(xs.shape[1]))
    assert xs[1, 0].item() == s.stream_len


def test_ranks_take_contiguous_slices_and_same_length():
    ids, offs = _docs()
    full = _rows(LMStream(ids, offs, bs=4, bptt=7, shuffle=True, seed=3, world_size=1))[1]
    parts = [LMStream(ids, offs, bs=2, bptt=7, shuffle=True, seed=3, rank=r, world_size=2)
             for r in range(2)]
    assert len(parts[0]) == len(parts[1])
    got = torch.cat([_rows(p)[1] for p in parts], 0)
    assert torch.equal(got, full)
    with pytest.raises(UlmfitError):
        LMStream(ids, offs, bs=2, rank=2, world_size=2)


def test_shuffle_per_epoch_deterministic():
    ids, offs = _docs()
    a = LMStream(ids, offs, bs=2, bptt=10, seed=0)
    e0 = _rows(a)[1]
    e1 = _rows(a)[1]  # second pass: next epoch
    assert not torch.equal(e0, e1)
    b = LMStream(ids, offs, bs=2, bptt=10, seed=0)
    b.set_epoch(1)
    assert torch.equal(_rows(b)[1], e1)
    # documents stay whole: each doc's 50 ids appear in order
    flat = e0.flatten().tolist()
    starts = [i for i, v in enumerate(flat) if v % 50 == 0]
    assert all(flat[i + 1] == flat[i] + 1 for i in starts if i + 1 < len(flat))


def test_variable_bptt():
    ids = np.arange(20000)
    s = LMStream(ids, None, bs=2, bptt=70, seed=1)
    lens = s.seq_lens()
    assert min(lens[:-1]) >= 5 and len(set(lens)) > 5
    assert any(l < 50 for l in lens) and abs(np.mean(lens[:-1]) - 68) < 6
    for (x, _), sl in zip(s, lens):
        assert x.shape[1] == sl == s.seq_len


def test_backwards():
    ids, offs = _docs(4, 10)
    s = LMStream(ids, offs, bs=1, bptt=100, shuffle=False, backwards=True, variable_bptt=False)
    x, y = next(iter(s))
    assert x[0, :3].tolist() == [39, 38, 37] and y[0, 0].item() == 38


def test_memmap(tmp_path):
    tok = TextTokenizer.train(["a b c d e"] * 3, min_freq=1)
    ids, offs = numericalize_to_memmap(tok, iter(["a b", "c d e", "a"]), tmp_path / "ids.bin",
                                       chunk=2)
    assert ids.dtype == np.uint16 and offs.tolist() == [0, 3, 7, 9]
    assert ids[offs[1]] == 2  # each doc starts with xxbos
    ids2, offs2 = load_memmap(tmp_path / "ids.bin")
    assert ids2.tolist() == ids.tolist() and offs2.tolist() == offs.tolist()
    with pytest.raises(UlmfitError, match="empty"):
        numericalize_to_memmap(tok, [], tmp_path / "e.bin")
