"""Paired comparison of two strategies on the same seeds: the figures equal their formulas."""
import math

import numpy as np
import pytest
from scipy import stats

from ulmfit.compare.paired import paired, paired_lines
from ulmfit.compare.plots import paired_rows

A = {0: 0.650, 1: 0.659, 2: 0.633, 3: 0.738, 4: 0.567}
B = {0: 0.736, 1: 0.720, 2: 0.712, 3: 0.759, 4: 0.566}


def test_paired_equals_the_textbook_tests():
    r = paired(A, B)
    a, b = np.array(list(A.values())), np.array(list(B.values()))
    assert r["n"] == 5 and r["seeds"] == [0, 1, 2, 3, 4]
    assert r["mean_diff"] == pytest.approx((b - a).mean())
    assert r["std_a"] == pytest.approx(a.std(ddof=1)) and r["std_b"] == pytest.approx(b.std(ddof=1))
    assert (r["wins"], r["ties"], r["losses"]) == (4, 0, 1)
    assert r["diff_p"] == pytest.approx(stats.ttest_rel(b, a).pvalue)
    # Pitman-Morgan: the spreads are equal exactly when a + b and b - a are uncorrelated
    assert r["spread_p"] == pytest.approx(stats.pearsonr(a + b, b - a).pvalue)


def test_paired_reads_only_the_shared_seeds_and_says_when_a_test_is_undefined():
    r = paired({0: 0.5, 1: 0.6, 7: 0.9}, {1: 0.7, 0: 0.6, 3: 0.1})
    assert r["seeds"] == [0, 1] and r["mean_diff"] == pytest.approx(0.1)
    assert r["diff_p"] is None  # both differences equal: no variation to test against
    assert r["spread_p"] is None  # two seeds: no correlation to test
    same = paired({0: 0.1, 1: 0.2, 2: 0.4}, {0: 0.1, 1: 0.2, 2: 0.4})
    assert same["mean_diff"] == 0 and same["ties"] == 3 and same["diff_p"] is None and same["spread_p"] is None


def test_equal_spreads_give_a_large_p_and_a_doubled_spread_over_many_seeds_a_small_one():
    rng = np.random.default_rng(0)
    draw = rng.normal(0, 1, 40)  # the draws' difficulty, shared by both
    a = {i: float(v + rng.normal(0, 0.1)) for i, v in enumerate(draw)}
    same = {i: float(v + rng.normal(0, 0.1)) for i, v in enumerate(draw)}
    wide = {i: float(2 * v) for i, v in enumerate(draw)}
    assert paired(a, same)["spread_p"] > 0.05
    assert paired(a, wide)["spread_p"] < 1e-6 and paired(a, wide)["std_b"] > 1.9 * paired(a, wide)["std_a"]


def test_paired_rows_and_lines_for_a_compare():
    rows = [{"train_size": "8pc", "strategy": s, "seed": k, "status": "ok", "test_accuracy": v}
            for s, m in (("recipe", B), ("no_self_training", A)) for k, v in m.items()]
    rows.append({"train_size": "8pc", "strategy": "broken", "seed": 0, "status": "failed", "test_accuracy": None})
    out = paired_rows(rows, "8pc", "test_accuracy")
    assert [(r["ref"], r["strategy"]) for r in out] == [("recipe", "no_self_training")]
    assert out[0]["mean_diff"] == pytest.approx(-paired(A, B)["mean_diff"])
    text = "\n".join(paired_lines("recipe", [("no_self_training", out[0])]))
    assert "| no_self_training | 5 | -0.0492 | 1 / 0 / 4 | 0.04 | 0.0763 / 0.0612 | 0.49 |" in text
    assert math.isclose(out[0]["spread_p"], paired(A, B)["spread_p"])
