import math

import pytest

from ulmfit.core.schedules import SGDR, STLR, OneCycle, make_schedule, total_epochs_for_sgdr
from ulmfit.errors import UlmfitError


def test_stlr_exact_values():
    s = STLR(cut_frac=0.1, ratio=32)
    T = 1000
    cut = 100
    assert s.lr_mult(0, T) == pytest.approx(1 / 32)
    assert s.lr_mult(cut, T) == pytest.approx(1.0)
    assert s.lr_mult(T, T) == pytest.approx(1 / 32)
    # halfway up: p = 0.5
    assert s.lr_mult(50, T) == pytest.approx((1 + 0.5 * 31) / 32)
    # on the way down: p = 1 - (t - cut) / (cut * (1/cut_frac - 1))
    t = 550
    p = 1 - (t - cut) / (cut * 9)
    assert s.lr_mult(t, T) == pytest.approx((1 + p * 31) / 32)
    # peak is the maximum
    assert max(s.lr_mult(t, T) for t in range(T)) == pytest.approx(1.0)


def test_stlr_floor_of_cut():
    s = STLR(cut_frac=0.1, ratio=10)
    # T=25 -> cut = floor(2.5) = 2
    assert s.lr_mult(2, 25) == pytest.approx(1.0)
    assert s.lr_mult(1, 25) == pytest.approx((1 + 0.5 * 9) / 10)


def test_one_cycle_values():
    s = OneCycle(pct_start=0.25, div=25, div_final=1e5, moms=(0.95, 0.85, 0.95))
    T = 100
    assert s.lr_mult(0, T) == pytest.approx(1 / 25)
    assert s.lr_mult(25, T) == pytest.approx(1.0)
    assert s.lr_mult(100, T) == pytest.approx(1e-5)
    # halfway through warm-up a cosine is at the midpoint
    assert s.lr_mult(12.5, T) == pytest.approx((1 / 25 + 1) / 2)
    assert s.momentum(0, T) == pytest.approx(0.95)
    assert s.momentum(25, T) == pytest.approx(0.85)
    assert s.momentum(100, T) == pytest.approx(0.95)
    # annealing: halfway through the second phase
    assert s.lr_mult(62.5, T) == pytest.approx((1 + 1e-5) / 2)


def test_sgdr_restarts_with_cycle_mult_2():
    s = SGDR(cycle_len=1, cycle_mult=2)
    spe = 10
    # cycles of 10, 20, 40 steps: restarts at 10 and 30
    assert s.lr_mult(0, 70, spe) == pytest.approx(1.0)
    assert s.lr_mult(9, 70, spe) < 0.05
    assert s.lr_mult(10, 70, spe) == pytest.approx(1.0)
    assert s.lr_mult(20, 70, spe) == pytest.approx(0.5)  # halfway through a 20-step cycle
    assert s.lr_mult(30, 70, spe) == pytest.approx(1.0)
    assert s.lr_mult(50, 70, spe) == pytest.approx(0.5)
    assert s.cycle_position(30, spe) == (2, 0.0)
    assert total_epochs_for_sgdr(1, 2, 3) == 7


def test_cosine_linear_constant():
    assert make_schedule("cosine").lr_mult(50, 100) == pytest.approx(0.5)
    lin = make_schedule("linear", warmup_pct=0.1)
    assert lin.lr_mult(10, 100) == pytest.approx(1.0)
    assert lin.lr_mult(55, 100) == pytest.approx(0.5)
    assert make_schedule("constant").lr_mult(3, 10) == 1.0
    assert math.isclose(make_schedule("one-cycle").lr_mult(0, 10), 1 / 25)


def test_unknown_schedule_and_option():
    with pytest.raises(UlmfitError, match="did you mean 'stlr'"):
        make_schedule("stlrr")
    with pytest.raises(UlmfitError, match="no option"):
        make_schedule("stlr", cut=0.2)


@pytest.mark.parametrize("moms", [[0.8, 0.7], [0.8, 0.7, 1.2], ["a", 0.7, 0.8]])
def test_one_cycle_refuses_bad_moms(moms):
    """A wrong `train.moms` fails when the schedule is built, not with an IndexError mid-training."""
    with pytest.raises(UlmfitError, match="moms must be three momentums"):
        make_schedule("one_cycle", moms=moms)
    assert make_schedule("one_cycle", moms=None).momentum(0, 10) is None


@pytest.mark.parametrize("pct", [-0.1, 1.5, "0.4", True])
def test_one_cycle_refuses_bad_pct_start(pct):
    with pytest.raises(UlmfitError, match="pct_start is the warm-up's fraction"):
        make_schedule("one_cycle", pct_start=pct)
