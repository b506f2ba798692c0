"""Learning-rate (and momentum) schedules, as multipliers of each group's base LR.

Every schedule maps (step t, total steps T, steps per epoch) to a factor in (0, 1] that multiplies
every layer group's LR, so discriminative ratios between groups are kept at every step. Some also
give a momentum (Adam's beta1, SGD's momentum) for the same step.

- `stlr`: slanted triangular LRs, Howard & Ruder 2018, eq. 3 (cut_frac, ratio).
- `one_cycle`: Smith 2018 as fastai's fit_one_cycle: cosine warm-up from lr/div to lr over
  pct_start, cosine anneal to lr/div_final, momentum cycled the other way.
- `sgdr`: cosine annealing with warm restarts (Loshchilov & Hutter 2017), cycle_len epochs,
  each cycle cycle_mult times longer than the one before.
- `cosine`, `linear` (warm-up then linear decay), `constant`.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass


def cos_anneal(start: float, end: float, pos: float) -> float:
    """Cosine from `start` (pos=0) to `end` (pos=1)."""
    return start + (1 + math.cos(math.pi * (1 - pos))) * (end - start) / 2


@dataclass
class Schedule:
    """Base class: constant LR, no momentum change."""

    def lr_mult(self, t: int, total: int, steps_per_epoch: int = 1) -> float:
        return 1.0

    def momentum(self, t: int, total: int, steps_per_epoch: int = 1) -> float | None:
        return None


@dataclass
class Constant(Schedule):
    pass


@dataclass
class STLR(Schedule):
    cut_frac: float = 0.1
    ratio: float = 32.0

    def lr_mult(self, t, total, steps_per_epoch=1):
        cut = max(1, math.floor(total * self.cut_frac))
        if t < cut:
            p = t / cut
        else:
            p = 1 - (t - cut) / (cut * (1 / self.cut_frac - 1))
        p = max(p, 0.0)
        return (1 + p * (self.ratio - 1)) / self.ratio


@dataclass
class OneCycle(Schedule):
    pct_start: float = 0.25
    div: float = 25.0
    div_final: float = 1e5
    moms: tuple = (0.95, 0.85, 0.95)

    def __post_init__(self):
        from ulmfit.errors import UlmfitError

        if self.moms and (len(self.moms) != 3 or not all(
                isinstance(m, (int, float)) and not isinstance(m, bool) and 0 <= m < 1 for m in self.moms)):
            raise UlmfitError(f"one_cycle moms must be three momentums in [0, 1) (start, end of warm-up, end), "
                              f"got {self.moms!r}")
        p = self.pct_start
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p <= 1:
            raise UlmfitError(f"one_cycle pct_start is the warm-up's fraction of the steps, in [0, 1]; got {p!r}")

    def _phase(self, t, total):
        warm = self.pct_start * total
        if t < warm:
            return 0, t / warm
        rest = total - warm
        return 1, (t - warm) / rest if rest > 0 else 1.0

    def lr_mult(self, t, total, steps_per_epoch=1):
        phase, pos = self._phase(t, total)
        if phase == 0:
            return cos_anneal(1 / self.div, 1.0, pos)
        return cos_anneal(1.0, 1 / self.div_final, pos)

    def momentum(self, t, total, steps_per_epoch=1):
        if not self.moms:
            return None
        phase, pos = self._phase(t, total)
        if phase == 0:
            return cos_anneal(self.moms[0], self.moms[1], pos)
        return cos_anneal(self.moms[1], self.moms[2], pos)


@dataclass
class SGDR(Schedule):
    cycle_len: float = 1.0
    cycle_mult: float = 2.0
    eta_min: float = 0.0

    def cycle_position(self, t: int, steps_per_epoch: int) -> tuple[int, float]:
        """(cycle index, position in [0, 1) within that cycle) of step t."""
        length = self.cycle_len * steps_per_epoch
        i = 0
        while t >= length:
            t -= length
            length *= self.cycle_mult
            i += 1
        return i, t / length

    def lr_mult(self, t, total, steps_per_epoch=1):
        _, pos = self.cycle_position(t, steps_per_epoch)
        return cos_anneal(1.0, self.eta_min, pos)


@dataclass
class Cosine(Schedule):
    eta_min: float = 0.0

    def lr_mult(self, t, total, steps_per_epoch=1):
        return cos_anneal(1.0, self.eta_min, t / max(total, 1))


@dataclass
class Linear(Schedule):
    warmup_pct: float = 0.1

    def lr_mult(self, t, total, steps_per_epoch=1):
        warm = self.warmup_pct * total
        if t < warm:
            return (t + 1) / (warm + 1)
        rest = total - warm
        return max(0.0, 1 - (t - warm) / rest) if rest > 0 else 1.0


SCHEDULES = {
    "stlr": STLR,
    "one_cycle": OneCycle,
    "sgdr": SGDR,
    "cosine": Cosine,
    "linear": Linear,
    "constant": Constant,
}


def schedule_key(name: str) -> str:
    """The registry key of a schedule name as users write it ("One-Cycle" -> "one_cycle")."""
    return str(name).strip().lower().replace("-", "_")


def make_schedule(name: str, **kwargs) -> Schedule:
    """Build a schedule by name; unknown names and options end in a UlmfitError."""
    from ulmfit.errors import UlmfitError

    key = schedule_key(name)
    if key not in SCHEDULES:
        close = difflib.get_close_matches(key, SCHEDULES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UlmfitError(
            f"unknown schedule {name!r}{hint}; choose one of {', '.join(SCHEDULES)}"
        )
    cls = SCHEDULES[key]
    try:
        return cls(**kwargs)
    except TypeError:
        fields = list(cls.__dataclass_fields__)
        bad = [k for k in kwargs if k not in fields]
        raise UlmfitError(
            f"schedule {key!r} has no option(s) {bad}; its options are {fields or 'none'}"
        ) from None


def total_epochs_for_sgdr(cycle_len: float, cycle_mult: float, n_cycles: int) -> float:
    """Epochs that n_cycles SGDR cycles take (fastai's cycle_len / cycle_mult arithmetic)."""
    return sum(cycle_len * cycle_mult**i for i in range(n_cycles))
