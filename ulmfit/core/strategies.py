"""Fine-tuning strategies: which layer groups train, for how long, with which LRs and schedule.

A strategy is a list of `Stage`s. Each stage says which groups are trainable (the top `unfreeze`
groups, or exactly the groups in `only`), for how many epochs, with which LR spec (see
`groups.lr_spec_to_list`) and schedule. Built-in strategies:

- `gradual`: ULMFiT's gradual unfreezing (Howard & Ruder 2018, 3.3): head only, then one more
  group per stage, the last stage trains everything.
- `chain_thaw`: Felbo et al. 2017 (DeepMoji): the head alone, then each lower group alone from the
  bottom up, then everything.
- `full`: everything from the start.
- `head_only`: the top group only (a frozen body).
- `none`: no stages at all, for a model whose head is already fitted some other way (a
  transformers classifier's `linear_probe`); the caller decides where that is allowed.

Users can write their own stages in YAML (`strategy: custom`, `stages: [...]`).
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ulmfit.errors import UlmfitError

STRATEGIES = ("gradual", "chain_thaw", "full", "head_only", "none", "custom")


@dataclass
class Stage:
    epochs: float = 1
    unfreeze: int | str = "all"          # top n groups trainable, or "all"
    only: list[int] | None = None        # exactly these groups (overrides `unfreeze`)
    lr: Any = 1e-3                       # number, (low, high) pair, or one LR per group
    lr_factor: float | None = None       # with a number: lower groups get lr / factor**depth
    schedule: str = "one_cycle"
    schedule_args: dict = field(default_factory=dict)
    name: str = ""

    def __post_init__(self):
        where = f"stage {self.name!r}" if self.name else "stage"
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, (int, float)) or self.epochs <= 0:
            raise UlmfitError(f"{where}: epochs must be a positive number, got {self.epochs!r}")
        lrs = self.lr if isinstance(self.lr, (list, tuple)) else [self.lr]
        if not lrs or any(isinstance(v, bool) or not isinstance(v, (int, float)) or v <= 0 for v in lrs):
            raise UlmfitError(f"{where}: lr must be a positive number, a [low, high] pair or one per group, "
                              f"got {self.lr!r}")
        if self.lr_factor is not None and (not isinstance(self.lr_factor, (int, float)) or self.lr_factor <= 0):
            raise UlmfitError(f"{where}: lr_factor must be a positive number or null, got {self.lr_factor!r}")

    def trainable(self, n_groups: int) -> list[int]:
        if self.only is not None:
            bad = [i for i in self.only if not -n_groups <= i < n_groups]
            if bad:
                raise UlmfitError(f"stage {self.name!r}: group(s) {bad} out of range for {n_groups} groups")
            return sorted({i % n_groups for i in self.only})
        if self.unfreeze == "all":
            return list(range(n_groups))
        k = int(self.unfreeze)
        if k < 1:
            raise UlmfitError(f"stage {self.name!r}: unfreeze must be >= 1 or 'all', got {k}")
        return list(range(max(0, n_groups - k), n_groups))

    def to_dict(self) -> dict:
        return asdict(self)


def stage_from_dict(d: dict) -> Stage:
    names = {f.name for f in fields(Stage)}
    for k in d:
        if k not in names:
            close = difflib.get_close_matches(k, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UlmfitError(f"unknown stage option {k!r}{hint}; valid: {', '.join(sorted(names))}")
    return Stage(**d)


def _per_stage(value, n: int, what: str) -> list:
    if isinstance(value, (list, tuple)) and len(value) == n and not _is_lr_pair(value, what):
        return list(value)
    return [value] * n


def _is_lr_pair(value, what: str) -> bool:
    # (low, high) pairs of numbers are one LR spec, not a per-stage list
    return what == "lr" and len(value) == 2 and all(isinstance(v, (int, float)) for v in value)


def build_strategy(
    name: str,
    n_groups: int,
    epochs: Any = 1,
    lr: Any = 1e-3,
    lr_factor: float | None = 2.6,
    schedule: str = "one_cycle",
    schedule_args: dict | None = None,
    stages: list | None = None,
) -> list[Stage]:
    """Expand a named strategy into stages.

    `epochs` and `lr` may be one value for every stage or a list with one value per stage
    (`lr` entries may themselves be pairs or per-group lists).
    """
    schedule_args = dict(schedule_args or {})
    key = name.lower().replace("-", "_")
    if key not in STRATEGIES:
        close = difflib.get_close_matches(key, STRATEGIES, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UlmfitError(f"unknown strategy {name!r}{hint}; choose one of {', '.join(STRATEGIES)}")
    if key == "none":
        return []
    if key == "custom":
        if not stages:
            raise UlmfitError("strategy 'custom' needs a list of stages")
        return [s if isinstance(s, Stage) else stage_from_dict(dict(s)) for s in stages]

    if key == "gradual":
        if isinstance(epochs, (int, float)):
            partial = min(3, n_groups - 1)
            epochs = [1] * partial + [epochs]
        last = len(epochs) - 1
        plan = []
        for k in range(len(epochs)):
            top = "all" if k == last or k + 1 >= n_groups else k + 1
            plan.append(("unfreeze all" if top == "all" else f"unfreeze top {top}", top, None))
    elif key == "chain_thaw":
        plan = [("head", 1, None)] + [(f"group {i}", 1, [i]) for i in range(n_groups - 1)]
        plan.append(("all", "all", None))
    elif key == "full":
        plan = [("all", "all", None)]
    else:  # head_only
        plan = [("head", 1, None)]

    n = len(plan)
    ep = _per_stage(epochs, n, "epochs")
    lrs = _per_stage(lr, n, "lr")
    out = []
    for (label, unfreeze, only), e, stage_lr in zip(plan, ep, lrs):
        out.append(Stage(epochs=e, unfreeze=unfreeze, only=only, lr=stage_lr, lr_factor=lr_factor,
                         schedule=schedule, schedule_args=dict(schedule_args), name=label))
    return out
