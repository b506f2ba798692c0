"""LR range test (Smith 2015; fastai's lr_find): an exponential LR sweep that restores the model.

The top group's LR goes from `start_lr` to `end_lr` over `num_it` steps (lower groups keep their
discriminative ratio); the loss is smoothed with an exponential moving average and the sweep stops
when it exceeds 4x the best smoothed loss, or is not finite. The model, optimizer and RNG states
are restored exactly afterwards. Suggestions:
- `valley` (default, fastai's): the LR two thirds down the longest descending stretch of the curve;
- `steep`: the LR where the smoothed loss falls fastest against log LR;
- `minimum`: the LR at the minimum smoothed loss, divided by 10.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ulmfit.core.groups import lr_spec_to_list
from ulmfit.core.seed import rng_state, set_rng_state
from ulmfit.errors import UlmfitError

SUGGESTIONS = ("valley", "steep", "minimum")


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]          # smoothed
    raw_losses: list[float]
    suggestions: dict = field(default_factory=dict)
    default: str = "valley"

    @property
    def suggestion(self) -> float:
        return self.suggestions[self.default]

    def to_dict(self) -> dict:
        return {"lrs": self.lrs, "losses": self.losses, "raw_losses": self.raw_losses,
                "suggestions": self.suggestions, "suggested_lr": self.suggestion}

    def plot(self, ax=None):
        import matplotlib

        if ax is None:
            import matplotlib.pyplot as plt

            fig, ax = plt.subplots(figsize=(6, 4))
        else:
            fig = ax.figure
        ax.plot(self.lrs, self.losses, label="smoothed loss")
        ax.set_xscale("log")
        ax.set_xlabel("learning rate (top group)")
        ax.set_ylabel("loss")
        markers = {"valley": "o", "steep": "^", "minimum": "s"}
        for name, lr in self.suggestions.items():
            i = int(np.argmin(np.abs(np.log(self.lrs) - math.log(lr))))
            ax.plot([lr], [self.losses[i]], markers.get(name, "x"), label=f"{name}: {lr:.2e}")
        ax.legend()
        matplotlib.pyplot.close(fig)
        return fig

    def _repr_png_(self):  # inline in notebooks
        import io

        buf = io.BytesIO()
        self.plot().savefig(buf, format="png", dpi=90, bbox_inches="tight")
        return buf.getvalue()

    def save(self, out_dir: str | Path) -> None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "lr_find.json").write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        self.plot().savefig(out / "lr_find.png", dpi=100, bbox_inches="tight")


def suggest(lrs, losses) -> dict:
    lrs, losses = np.asarray(lrs, dtype=float), np.asarray(losses, dtype=float)
    n = len(losses)
    if n < 3:
        raise UlmfitError("the LR sweep stopped after fewer than 3 steps; start at a lower LR")
    out = {"minimum": float(lrs[int(np.argmin(losses))] / 10)}
    grads = np.gradient(losses, np.log(lrs))
    out["steep"] = float(lrs[int(np.argmin(grads))])
    # valley: longest strictly descending subsequence, as in fastai's `valley` (O(n^2), n ~ 100)
    length = np.ones(n, dtype=int)
    prev_best_end, start = 0, 0
    for i in range(1, n):
        for j in range(i):
            if losses[i] < losses[j] and length[i] < length[j] + 1:
                length[i] = length[j] + 1
        if length[i] > length[prev_best_end]:
            prev_best_end = i
            start = i - length[i]
    third = (prev_best_end - start) / 3
    idx = min(n - 1, max(0, start + int(third) + int(third / 2)))
    out["valley"] = float(lrs[idx])
    return out


def lr_find(trainer, start_lr: float = 1e-7, end_lr: float = 10.0, num_it: int = 100,
            lr_factor: float | None = None, beta: float = 0.98, stop_div: float = 4.0,
            suggestion: str = "valley") -> LRFinderResult:
    """Run the sweep on `trainer`'s trainable groups; everything is restored afterwards."""
    if suggestion not in SUGGESTIONS:
        raise UlmfitError(f"unknown LR suggestion {suggestion!r}; choose one of {', '.join(SUGGESTIONS)}")
    if not (0 < start_lr < end_lr):
        raise UlmfitError(f"need 0 < start_lr < end_lr, got {start_lr} and {end_lr}")
    model = trainer.model
    n_groups = len(trainer.groups)
    ratios = [x / start_lr for x in lr_spec_to_list(start_lr, n_groups, lr_factor)]
    if trainer.optimizer is None:
        trainer._make_optimizer([start_lr] * n_groups)
    saved_model = copy.deepcopy(model.state_dict())
    saved_opt = copy.deepcopy(trainer.optimizer.state_dict())
    saved_rng = rng_state()
    saved_grad = [p.requires_grad for p in model.parameters()]
    if trainer.accelerator.device.type == "cpu":
        torch.set_flush_denormal(True)  # high LRs produce denormals that slow CPU steps 20x
    lrs, raw, smooth = [], [], []
    avg, best = 0.0, math.inf
    model.train()
    if trainer.hooks.on_epoch_start:
        trainer.hooks.on_epoch_start(model, 0)
    mult = (end_lr / start_lr) ** (1 / max(1, num_it - 1))

    def batches():
        while True:
            got = False
            for chunk in trainer._batches(trainer.train_loader, None):
                got = True
                yield chunk
            if not got:
                raise UlmfitError("the training data gave no batch for the LR finder")

    try:
        it = batches()
        for i in range(num_it):
            lr = start_lr * mult**i
            base = [lr * r for r in ratios]
            try:
                loss = trainer.train_step(next(it), 1.0, None, base).item()
            except UlmfitError:
                break  # non-finite loss: the sweep has diverged
            avg = beta * avg + (1 - beta) * loss
            sm = avg / (1 - beta ** (i + 1))
            lrs.append(lr)
            raw.append(loss)
            smooth.append(sm)
            best = min(best, sm)
            if not math.isfinite(sm) or (stop_div and i > 0 and sm > stop_div * best):
                break
    finally:
        model.load_state_dict(saved_model)
        trainer.optimizer.load_state_dict(saved_opt)
        set_rng_state(saved_rng)
        for p, g in zip(model.parameters(), saved_grad):
            p.requires_grad_(g)
            p.grad = None
    return LRFinderResult(lrs, smooth, raw, suggest(lrs, smooth), suggestion)
