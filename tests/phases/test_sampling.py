"""Low-shot sampling: N in all or N per class, stratified and seeded."""

import warnings

import numpy as np
import pytest

from ulmfit.errors import UlmfitError
from ulmfit.phases.config import DataConfig
from ulmfit.phases.sampling import parse_train_size, subsample
from ulmfit.text.data.readers import Split


def _split(counts):
    labels = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
    return Split([f"text {i}" for i in range(len(labels))], labels)


@pytest.mark.parametrize("v,want", [(100, (100, False)), ("100", (100, False)), ("8pc", (8, True)),
                                    (" 16PC ", (16, True)), ("all", None), (None, None)])
def test_parse_train_size(v, want):
    assert parse_train_size(v) == want


@pytest.mark.parametrize("bad", ["0pc", "eight", "8 per class", 0, -3, True])
def test_bad_train_size_is_refused_when_the_recipe_is_read(bad):
    with pytest.raises(UlmfitError, match="train size"):
        DataConfig(train_size=bad)


def test_per_class_draws_exactly_n_of_each_class_and_the_same_rows_for_a_seed():
    split = _split([40, 25, 60])
    a = subsample(split, "8pc", seed=3)
    assert np.bincount(a.labels).tolist() == [8, 8, 8]
    assert a.texts == subsample(split, "8pc", seed=3).texts
    assert a.texts != subsample(split, "8pc", seed=4).texts
    assert set(a.texts) <= set(split.texts)


def test_per_class_count_above_a_class_takes_all_of_it_and_warns():
    split = _split([40, 5, 60])
    with pytest.warns(UserWarning, match="fewer than 8 training rows"):
        a = subsample(split, "8pc", seed=0)
    assert np.bincount(a.labels).tolist() == [8, 5, 8]


def test_a_total_stays_proportional():
    split = _split([40, 20, 40])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = subsample(split, 10, seed=0)
    assert np.bincount(a.labels).tolist() == [4, 2, 4]
    assert subsample(split, 1000, seed=0) is split


def test_compare_accepts_per_class_sizes_and_orders_them():
    from ulmfit.compare.plots import aggregate
    from ulmfit.compare.rows import parse_size

    assert [parse_size(v) for v in ("8pc", "100", "all", " 16PC")] == ["8pc", 100, None, "16pc"]
    with pytest.raises(UlmfitError, match="per class"):
        parse_size("8 per class")
    rows = [{"strategy": "gradual", "seed": 0, "train_size": size, "status": "ok", "test_accuracy": 0.5,
             "valid_accuracy": None, "wall_s": 1.0, "n_train": 1, "epochs": 1} for size in ("64pc", "8pc", "16pc")]
    assert [a["train_size"] for a in aggregate(rows)] == ["8pc", "16pc", "64pc"]
