"""One evaluation pass: the mean loss over real targets and the metrics over gathered predictions,
the same on one process or many."""

from __future__ import annotations

from typing import Callable

import torch

from ulmfit.core.accel import cat_numpy, gather_ragged


@torch.no_grad()
def share_buffers(model: torch.nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank before evaluating: DDP copies
    them only before a training forward, so after the last step each rank holds its own batch's
    update, and rank 1 would score a model slightly unlike the one rank 0 saves."""
    import torch.distributed as dist

    for b in model.buffers():
        dist.broadcast(b.data, src=0)


@torch.no_grad()
def evaluate(acc, model: torch.nn.Module, loader, loss_step: Callable, metrics: dict, loss_metrics: dict,
             predict: Callable | None, prefix: str, progress: bool) -> dict:
    """``{prefix}_loss`` and ``{prefix}_<metric>`` over ``loader``. ``loss_step(batch)`` gives (loss,
    output, targets); ``predict(output)`` the predictions metrics compare (default argmax(-1))."""
    if acc.num_processes > 1:
        share_buffers(model)
    loss_sum = torch.zeros((), dtype=torch.float64, device=acc.device)
    count = torch.zeros((), dtype=torch.float64, device=acc.device)
    preds, targs = [], []
    # accelerate's loaders give every rank the same number of equal batches (per-batch gather);
    # a domain iterable may not (sorted-length classification batches): gather once at the end
    per_batch = isinstance(loader, torch.utils.data.DataLoader) or acc.num_processes == 1
    from tqdm.auto import tqdm

    # tqdm takes the total from len(loader) where the loader has one
    for batch in tqdm(loader, desc=prefix, leave=False, dynamic_ncols=True,
                      disable=not (progress and acc.is_main_process)):
        loss, output, targets = loss_step(batch)
        token_level = targets.ndim == 2 and not targets.is_floating_point()
        # token-level targets (LMs) count real tokens; -100 marks ignored positions (MLM)
        n = (targets != -100).sum() if token_level else (targets.shape[0] if targets.ndim else 1)
        loss_sum += loss.detach().double() * n
        count += n
        if metrics:
            p = predict(output) if predict else output.argmax(-1)
            if token_level:  # LM: one prediction per token
                p, targets = p.reshape(-1), targets.reshape(-1)
            p, t = p.contiguous(), targets.contiguous()
            if per_batch:
                p, t = acc.gather_for_metrics((p, t))
            preds.append(p.cpu())
            targs.append(t.cpu())
    if metrics and not per_batch:
        preds, targs = gather_ragged(preds, targs)
    loss_sum, count = acc.reduce(loss_sum), acc.reduce(count)
    out = {}
    if count.item() > 0:
        mean = (loss_sum / count).item()
        out[f"{prefix}_loss"] = mean
        for name, fn in loss_metrics.items():
            out[f"{prefix}_{name}"] = float(fn(mean))
    if preds:
        p, t = cat_numpy(preds), cat_numpy(targs)
        for name, fn in metrics.items():
            out[f"{prefix}_{name}"] = float(fn(p, t))
    return out
