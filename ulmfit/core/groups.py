"""Layer groups: an ordered split of any model into groups, freezing, and discriminative LRs.

A model is split bottom -> top into groups of modules (fastai's "layer groups"). Freezing works on
whole groups (`freeze_to(n)` has fastai's meaning: groups before index n are frozen, negative n
counts from the top). Parameters shared by two groups (tied weights) belong to the first group
that names them, so every parameter is in exactly one optimizer group.

Discriminative learning rates (Howard & Ruder 2018, section 3.2): one optimizer parameter group
per layer group, built once and kept for the whole run. Frozen groups stay in the optimizer and
receive no gradient, so unfreezing needs no new optimizer and keeps every group's state.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
from torch import nn

from ulmfit.errors import UlmfitError

NORM_TYPES = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm)


def lr_spec_to_list(spec, n_groups: int, factor: float | None = None) -> list[float]:
    """Turn an LR spec into one LR per group, bottom -> top.

    - a number: the same LR for every group, or with `factor`, the top group gets it and each
      lower group gets the LR above divided by `factor` (ULMFiT's 2.6);
    - a `(low, high)` pair: spread geometrically from the bottom group to the top (fastai's slice);
    - a list of n_groups numbers: used as is.
    """
    if isinstance(spec, str):
        try:
            spec = float(spec)
        except ValueError:
            raise UlmfitError(f"learning rate {spec!r} is not a number") from None
    if isinstance(spec, (int, float)):
        lr = float(spec)
        if lr <= 0:
            raise UlmfitError(f"learning rate must be positive, got {lr}")
        if factor is None or factor == 1:
            return [lr] * n_groups
        return [lr / factor ** (n_groups - 1 - i) for i in range(n_groups)]
    spec = [float(x) for x in spec]
    if len(spec) == 2 and n_groups != 2:
        low, high = spec
        if low <= 0 or high <= 0:
            raise UlmfitError(f"learning rates must be positive, got {spec}")
        if n_groups == 1:
            return [high]
        step = (high / low) ** (1 / (n_groups - 1))
        return [low * step**i for i in range(n_groups)]
    if len(spec) != n_groups:
        raise UlmfitError(
            f"LR spec has {len(spec)} values but the model has {n_groups} layer groups; "
            "give one number, a (low, high) pair, or one LR per group"
        )
    return spec


class LayerGroups:
    """A model plus its ordered split into layer groups (bottom -> top).

    `groups` is a list whose items are modules or lists of modules. Every trainable parameter of
    `model` must appear in some group; a parameter named by two groups (tied weights) belongs to the
    first group that names it.
    """

    def __init__(self, model: nn.Module, groups: Sequence, train_norm: bool = True):
        self.model = model
        self.train_norm = train_norm
        self.modules: list[list[nn.Module]] = [
            list(g) if isinstance(g, (list, tuple)) else [g] for g in groups
        ]
        if not self.modules:
            raise UlmfitError("a model needs at least one layer group")
        self.params: list[list[nn.Parameter]] = []
        seen: set[int] = set()
        for mods in self.modules:
            group = []
            for m in mods:
                for p in m.parameters():
                    if id(p) not in seen:
                        seen.add(id(p))
                        group.append(p)
            self.params.append(group)
        missing = [n for n, p in model.named_parameters() if id(p) not in seen]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise UlmfitError(
                f"the layer split misses {len(missing)} parameter(s) of the model: {shown}"
            )
        model_ids = {id(p) for p in model.parameters()}
        foreign = len(seen - model_ids)
        if foreign:
            raise UlmfitError(f"the layer split names {foreign} parameter(s) that are not in the model")
        for i, g in enumerate(self.params):
            if not g:
                raise UlmfitError(f"layer group {i} has no parameters of its own")

    def __len__(self) -> int:
        return len(self.params)

    # ---- freezing -------------------------------------------------------------------------
    def freeze_to(self, n: int) -> None:
        """Freeze groups [0, n) and unfreeze [n, end). Negative n counts from the top."""
        k = len(self)
        start = n if n >= 0 else k + n
        self.set_trainable(range(max(0, min(start, k)), k))

    def set_trainable(self, indices) -> None:
        """Make exactly the groups in `indices` trainable (chain-thaw trains one lower group alone)."""
        keep = set(indices)
        for i, group in enumerate(self.params):
            for p in group:
                p.requires_grad_(i in keep)
        if self.train_norm:
            for i, mods in enumerate(self.modules):
                if i in keep:
                    continue
                for m in mods:
                    for sub in m.modules():
                        if isinstance(sub, NORM_TYPES):
                            for p in sub.parameters(recurse=False):
                                p.requires_grad_(True)

    def freeze(self) -> None:
        """Train only the top group."""
        self.freeze_to(-1)

    def unfreeze(self) -> None:
        self.freeze_to(0)

    def trainable_groups(self) -> list[int]:
        return [i for i, g in enumerate(self.params) if any(p.requires_grad for p in g)]

    # ---- optimizer ------------------------------------------------------------------------
    def param_groups(self, lrs: Iterable[float], weight_decay: float = 0.0) -> list[dict]:
        """One optimizer group per layer group; biases and norm weights get no weight decay."""
        lrs = list(lrs)
        no_decay = set()
        for m in self.model.modules():
            if isinstance(m, NORM_TYPES):
                no_decay.update(id(p) for p in m.parameters(recurse=False))
        out = []
        for lr, group in zip(lrs, self.params):
            # a parameter marked `no_weight_decay` (e.g. an embedding holding frozen word vectors)
            # joins the biases and norm weights
            no_decay.update(id(p) for p in group if getattr(p, "no_weight_decay", False))
            decay = [p for p in group if p.ndim > 1 and id(p) not in no_decay]
            plain = [p for p in group if not (p.ndim > 1 and id(p) not in no_decay)]
            # keep one optimizer group per layer group; wd per parameter via a split is fastai's
            # "bn_wd=False"; we keep it simple: two entries per layer group sharing the lr.
            out.append({"params": decay, "lr": lr, "weight_decay": weight_decay, "layer_group": len(out) // 2})
            out.append({"params": plain, "lr": lr, "weight_decay": 0.0, "layer_group": len(out) // 2})
        return out

    def make_optimizer(
        self,
        lrs: Iterable[float],
        name: str = "adamw",
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.99),
        eps: float = 1e-6,
        momentum: float = 0.9,
    ) -> torch.optim.Optimizer:
        groups = self.param_groups(lrs, weight_decay)
        name = name.lower()
        if name in ("adamw", "adam"):
            cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
            if _fused_candidate(cls, groups):
                try:
                    return cls(groups, betas=tuple(betas), eps=eps, fused=True)
                except (RuntimeError, ValueError):  # this torch has no fused kernel for these tensors
                    pass
            kw = {"foreach": True} if _supports(cls, "foreach") else {}
            return cls(groups, betas=tuple(betas), eps=eps, **kw)
        if name == "sgd":
            return torch.optim.SGD(groups, momentum=momentum)
        raise UlmfitError(f"unknown optimizer {name!r}; choose one of adamw, adam, sgd")


def _fused_candidate(cls, groups) -> bool:
    """Try the fused (one kernel for all tensors) Adam step: torch has it for CPU and CUDA
    floating-point tensors (torch >= 2.4); on CPU it is 4x faster than `foreach` (MiniLM-L6, 22 M
    parameters: 14 vs 61 ms a step), which matters when the optimizer is a third of a step."""
    params = [p for g in groups for p in g["params"]]
    return _supports(cls, "fused") and bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def _supports(cls, kw: str) -> bool:
    import inspect

    return kw in inspect.signature(cls.__init__).parameters


def set_group_lrs(optimizer: torch.optim.Optimizer, lrs: Sequence[float]) -> None:
    """Set the LR of every optimizer group from one LR per layer group."""
    for g in optimizer.param_groups:
        g["lr"] = lrs[g["layer_group"]]
