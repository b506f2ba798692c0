"""Checkpoints inside an epoch: when one is due, what each process keeps, how log lines name one.

A day-long epoch on a CPU (an LM on IMDb) should not lose hours to a kill. The trainer saves every
``checkpoint_minutes`` (or ``checkpoint_steps``) inside an epoch, with what the epoch's row needs
(its running loss and gradient-norm sums) and what the model carries between batches (an RNN's
hidden state, through ``Hooks.get_carry`` / ``set_carry``). A resumed epoch draws the steps already
done from its loader without training on them, puts that back, then the RNG states as they were at
the save, and goes on as if it had never stopped (the tests compare weights bit for bit). Under
several processes each rank keeps its own RNG states and carried tensors. Exactness needs loaders
whose randomness comes from generators seeded by (seed, epoch), as the text loaders' does: a loader
that draws the global RNG while it is skipped (random augmentation, a random collator) resumes
close to, not exactly on, the run it continues.
"""

from __future__ import annotations

import time

import torch


def mid_epoch_due(cfg, acc, step: int, last_save: float) -> bool:
    """Whether to checkpoint after ``step`` of an epoch: every ``cfg.checkpoint_steps`` steps, or
    ``cfg.checkpoint_minutes`` after the last save. Under several processes rank 0's clock decides
    (checked every ``log_every`` steps, one small collective), so every rank saves together."""
    if cfg.checkpoint_steps and step % cfg.checkpoint_steps == 0:
        return True
    if not cfg.checkpoint_minutes:
        return False
    due = time.time() - last_save >= 60 * cfg.checkpoint_minutes
    if acc.num_processes == 1:
        return due
    if step % cfg.log_every:
        return False
    flag = torch.tensor(float(due and acc.is_main_process), device=acc.device)
    return acc.reduce(flag, "sum").item() > 0


def per_rank_state(acc, carry: list | None) -> list[dict] | None:
    """Each process's RNG states and carried tensors, gathered for rank 0 to save (a collective:
    every rank calls it). One process: just its carry (its RNGs are the checkpoint's own)."""
    from ulmfit.core.seed import rng_state

    carry = None if carry is None else [t.detach().cpu() for t in carry]
    if acc.num_processes == 1:
        return None if carry is None else [{"carry": carry}]
    from accelerate.utils import gather_object

    return gather_object([{"rng": rng_state(), "carry": carry}])


def own_state(state: dict, acc) -> dict:
    """This process's ``rng`` and ``carry`` from a loaded checkpoint: its own entry of ``ranks``
    where the checkpoint has one for it, else the checkpoint's RNG states."""
    ranks = state.get("ranks") or []
    mine = dict(ranks[acc.process_index]) if acc.process_index < len(ranks) else {}
    mine.setdefault("rng", state["rng"])
    return mine


def describe(name: str, epoch: int, partial: dict | None) -> str:
    """``ckpt-2-150 (after epoch 2, step 150)``: a checkpoint as log lines name it."""
    return f"{name} (after epoch {epoch}" + (f", step {partial['step']})" if partial else ")")
