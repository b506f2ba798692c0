"""The one training loop, on Hugging Face `accelerate`.

For each stage of a strategy: set which layer groups train; for each epoch and batch: schedule
step, forward, loss (+ a model's extra loss such as AR/TAR), backward, clip, optimizer step;
evaluate; write metrics; checkpoint after each epoch and inside long ones (core/resume.py). The same
code runs on a CPU, one GPU, or many processes (DDP over gloo or NCCL): `torchrun --nproc_per_node N
script.py` or `accelerate launch`.

Under several processes the model is wrapped in DDP anew at each stage, over the parameters
that train in that stage, so a group unfrozen later is synchronised without the slow
`find_unused_parameters=True` (DDP only reduces parameters that required grad when built).
Memory stays flat: losses are kept as one detached running tensor and logged as floats.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ulmfit.core import checkpoint as ckpt
from ulmfit.core import evaluation
from ulmfit.core.resume import describe, mid_epoch_due, own_state, per_rank_state
from ulmfit.core.checkpoint import append_metrics
from ulmfit.core.accel import allow_new_precision, resolve_mixed_precision, shutdown_distributed
from ulmfit.core.groups import LayerGroups, lr_spec_to_list, set_group_lrs
from ulmfit.core.schedules import make_schedule
from ulmfit.core.seed import set_rng_state, set_seed
from ulmfit.core.strategies import Stage
from ulmfit.core.threads import ThreadGovernor
from ulmfit.core.train_config import Hooks, TrainConfig
from ulmfit.errors import Interrupted, UlmfitError


@dataclass
class Trainer:
    model: nn.Module
    groups: LayerGroups
    loss_fn: Callable
    train_loader: Any
    valid_loader: Any = None
    config: TrainConfig = field(default_factory=TrainConfig)
    hooks: Hooks = field(default_factory=Hooks)
    metrics: dict = field(default_factory=dict)        # name -> fn(preds, targets) -> float
    loss_metrics: dict = field(default_factory=dict)   # name -> fn(mean valid loss) -> float
    out_dir: str | Path | None = None
    accelerator: Any = None

    def __post_init__(self):
        from accelerate import Accelerator
        from accelerate.utils import DataLoaderConfiguration

        cfg = self.config
        if cfg.grad_accum < 1:
            raise UlmfitError(f"grad_accum must be >= 1, got {cfg.grad_accum}")
        set_seed(cfg.seed)
        if self.accelerator is None:
            mp = resolve_mixed_precision(cfg.mixed_precision)
            allow_new_precision(mp)
            # accelerate only builds a multi-CPU (gloo) state when told `cpu=True`; torchrun sets
            # WORLD_SIZE, so a CPU-only machine under torchrun gets DDP over gloo
            multi_cpu = not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1
            self.accelerator = Accelerator(
                cpu=cfg.cpu or multi_cpu,
                mixed_precision=mp,
                dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
            )
        acc = self.accelerator
        if cfg.num_threads:
            torch.set_num_threads(cfg.num_threads)
        # fewer threads while other processes share the CPU (core/threads.py); one process only:
        # under torchrun each rank keeps the count the launcher gave it
        self.thread_governor = ThreadGovernor(enabled=not cfg.num_threads and acc.device.type == "cpu"
                                              and acc.num_processes == 1)
        if cfg.flush_denormal and acc.device.type == "cpu":
            torch.set_flush_denormal(True)
        self.model.to(acc.device)
        self.train_loader = self._prepare_loader(self.train_loader)
        self.valid_loader = self._prepare_loader(self.valid_loader)
        self.optimizer = None
        self.history: list[dict] = []
        self._reset_grad_norms()
        self.out_dir = Path(self.out_dir) if self.out_dir else None
        self._ddp = None

    # ---- set-up ---------------------------------------------------------------------------
    def _prepare_loader(self, loader):
        if loader is None:
            return None
        if isinstance(loader, torch.utils.data.DataLoader):
            return self.accelerator.prepare_data_loader(loader)
        return loader  # a domain iterable that shards itself (e.g. LM streams) and sets its epoch

    def _make_optimizer(self, lrs):
        cfg = self.config
        opt = self.groups.make_optimizer(lrs, cfg.optimizer, cfg.weight_decay, cfg.betas, cfg.eps)
        self.optimizer = self.accelerator.prepare_optimizer(opt)

    def _forward_model(self):
        return self._ddp if self._ddp is not None else self.model

    def _enter_stage(self, stage: Stage):
        self.groups.set_trainable(stage.trainable(len(self.groups)))
        if self.accelerator.num_processes > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            self._ddp = None
            ids = [self.accelerator.device.index] if self.accelerator.device.type == "cuda" else None
            self._ddp = DDP(self.model, device_ids=ids)

    def steps_per_epoch(self, stage: Stage | None = None) -> int:
        n = len(self.train_loader)
        if self.config.max_steps_per_epoch:
            n = min(n, self.config.max_steps_per_epoch)
        return max(1, n // self.config.grad_accum)

    # ---- one step -------------------------------------------------------------------------
    def _split(self, batch):
        if self.hooks.split_batch:
            return self.hooks.split_batch(batch)
        return batch[0], batch[1]

    def _to_device(self, x):
        dev = self.accelerator.device
        if isinstance(x, torch.Tensor):
            return x.to(dev, non_blocking=True)
        if isinstance(x, (list, tuple)):
            return type(x)(self._to_device(v) for v in x)
        if isinstance(x, dict):
            return {k: self._to_device(v) for k, v in x.items()}
        return x

    def _loss(self, batch, train: bool, full_precision: bool = False):
        inputs, targets = self._split(batch)
        inputs, targets = self._to_device(inputs), self._to_device(targets)
        model = self._forward_model() if train else self.model
        with contextlib.nullcontext() if full_precision else self.accelerator.autocast():
            if self.hooks.forward is not None:
                output = self.hooks.forward(model, inputs, targets, train)
            else:
                output = model(inputs)
            loss = self.loss_fn(output, targets)
            if train and self.hooks.loss_extra is not None:
                extra = self.hooks.loss_extra(self.model, output, targets)
                if extra is not None:
                    loss = loss + extra
        return loss, output, targets

    def _trainable_params(self):
        return [p for p in self.model.parameters() if p.requires_grad]

    def train_step(self, batches, lr_mult: float, mom: float | None, base_lrs, ctx: str = ""):
        """One optimizer step over `grad_accum` micro-batches. Returns the mean loss (tensor)."""
        acc, cfg = self.accelerator, self.config
        scale = self.hooks.lr_scale(batches[0]) if self.hooks.lr_scale else 1.0
        set_group_lrs(self.optimizer, [lr * lr_mult * scale for lr in base_lrs])
        if mom is not None:
            for g in self.optimizer.param_groups:
                if "betas" in g:
                    g["betas"] = (mom, g["betas"][1])
                elif "momentum" in g:
                    g["momentum"] = mom
        total = 0.0
        for i, batch in enumerate(batches):
            sync = i == len(batches) - 1
            ddp = self._ddp
            cm = ddp.no_sync() if (ddp is not None and not sync) else contextlib.nullcontext()
            with cm:
                loss, _, _ = self._loss(batch, train=True)
                if not torch.isfinite(loss.detach()):
                    raise UlmfitError(
                        f"the training loss became {loss.item()} {ctx} (top-group lr "
                        f"{base_lrs[-1] * lr_mult * scale:.3g}); lower the learning rate, "
                        "enable gradient clipping, or check the input data"
                    )
                acc.backward(loss / len(batches))
            total = total + loss.detach()
        if cfg.clip:
            params = self._trainable_params()
            if params:
                norm = acc.clip_grad_norm_(params, cfg.clip).detach().float()  # no sync: summed as tensors
                st = self._gn_stats
                st["sum"], st["n"], st["max"] = st["sum"] + norm, st["n"] + 1, torch.maximum(st["max"], norm)
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total / len(batches)

    def _reset_grad_norms(self) -> None:
        """Pre-clip gradient norms of the current epoch (sum, count, max), kept on the device."""
        self._gn_stats = {"sum": 0.0, "n": 0, "max": torch.zeros((), device=self.accelerator.device)}

    def _batches(self, loader, limit: int | None):
        """Yield lists of `grad_accum` consecutive batches (at most `limit` lists)."""
        k = self.config.grad_accum
        chunk, n = [], 0
        for batch in loader:
            chunk.append(batch)
            if len(chunk) == k:
                yield chunk
                chunk, n = [], n + 1
                if limit is not None and n >= limit:
                    return

    # ---- evaluation ----------------------------------------------------------------------
    def evaluate(self, loader=None, prefix: str = "valid", full_precision: bool = False) -> dict:
        """Loss and metrics over ``loader`` (default: the validation loader). ``full_precision``
        runs outside autocast, as a saved model is evaluated later (final test figures)."""
        loader = self.valid_loader if loader is None else self._prepare_loader(loader)
        if loader is None:
            return {}
        self.model.eval()
        if self.hooks.on_eval_start:
            self.hooks.on_eval_start(self.model)
        try:
            return evaluation.evaluate(self.accelerator, self.model, loader,
                                       lambda b: self._loss(b, train=False, full_precision=full_precision),
                                       self.metrics, self.loss_metrics, self.hooks.predict, prefix,
                                       self.config.progress)
        finally:
            self.model.train()

    # ---- the loop -------------------------------------------------------------------------
    def fit(self, stages: list[Stage], resume: bool = False) -> list[dict]:
        """Train through `stages`; with `resume`, continue from the latest checkpoint in out_dir."""
        if not stages:
            raise UlmfitError("a strategy needs at least one stage")
        n_groups = len(self.groups)
        schedules = [make_schedule(s.schedule, **s.schedule_args) for s in stages]
        base = [lr_spec_to_list(s.lr, n_groups, s.lr_factor) for s in stages]
        self._make_optimizer(base[0])
        done = 0
        self._best, self._bad_epochs, self._partial, self._saved = None, 0, None, None
        if resume:
            done = self._resume()
        self._position = (done + 1, 0)
        try:
            return self._fit_stages(stages, schedules, base, done)
        except KeyboardInterrupt:
            epoch, step = self._position
            kept = f"the checkpoint {self._saved} is kept; " if self._saved else ""
            raise Interrupted(f"interrupted at epoch {epoch} step {step}; {kept}resume with --resume") from None

    def _fit_stages(self, stages, schedules, base, done: int) -> list[dict]:
        cfg = self.config
        spe = self.steps_per_epoch()
        epoch = 0
        start_time = time.time() - (self.history[-1]["elapsed_s"] if self.history else 0.0) \
            - (self._partial["epoch_s"] if self._partial else 0.0)
        for si, (stage, sched, lrs) in enumerate(zip(stages, schedules, base)):
            n_epochs = int(math.ceil(stage.epochs))
            total = max(1, int(round(stage.epochs * spe)))
            if epoch + n_epochs <= done:
                epoch += n_epochs
                continue
            self._enter_stage(stage)
            for e in range(n_epochs):
                if epoch < done:
                    epoch += 1
                    continue
                steps_this = min(spe, total - e * spe)
                self._position = (epoch + 1, 0)
                row = self._train_epoch(stage, si, e, epoch, sched, lrs, total, spe, steps_this)
                row.update(self.evaluate())
                row["elapsed_s"] = time.time() - start_time
                self.history.append(row)
                self._log_row(row)
                stop = False
                if cfg.early_stopping_patience is not None and cfg.monitor in row:
                    v, best = row[cfg.monitor], self._best
                    better = best is None or (v < best if cfg.monitor_mode == "min" else v > best)
                    self._best, self._bad_epochs = (v, 0) if better else (best, self._bad_epochs + 1)
                    stop = self._bad_epochs > cfg.early_stopping_patience
                epoch += 1
                self._checkpoint(epoch)
                if stop:
                    self._say(f"early stopping after epoch {epoch}: {cfg.monitor} did not improve")
                    return self.history
        return self.history

    def _train_epoch(self, stage, si, e, epoch, sched, lrs, total, spe, steps_this) -> dict:
        from tqdm.auto import tqdm

        acc, cfg = self.accelerator, self.config
        self.model.train()
        for loader in (self.train_loader,):
            if hasattr(loader, "set_epoch"):
                loader.set_epoch(epoch)
        if self.hooks.on_epoch_start:
            self.hooks.on_epoch_start(self.model, epoch)
        bar = tqdm(total=steps_this, disable=not (cfg.progress and acc.is_main_process),
                   desc=f"{stage.name or 'stage ' + str(si)} epoch {epoch + 1}", leave=False, dynamic_ncols=True)
        running = torch.zeros((), device=acc.device)
        self._reset_grad_norms()
        t0 = last_save = time.time()
        steps = self._batches(self.train_loader, steps_this)
        n, epoch_s_done = self._skip_done_steps(steps, running, bar)
        t0 -= epoch_s_done
        for i, batches in enumerate(steps, start=n):
            self._position = (epoch + 1, i + 1)
            t = e * spe + i
            loss = self.train_step(batches, sched.lr_mult(t, total, spe), sched.momentum(t, total, spe),
                                   lrs, ctx=f"at epoch {epoch + 1}, step {i + 1}")
            running += loss
            n += 1
            self.thread_governor.tick()
            bar.update(1)
            if n % cfg.log_every == 0:
                bar.set_postfix(loss=f"{(running / n).item():.4f}")
            if n < steps_this and self.out_dir and cfg.checkpoint and mid_epoch_due(cfg, acc, n, last_save):
                self._checkpoint(epoch, dict(step=n, loss_sum=acc.reduce(running, "mean").item(),
                                             epoch_s=time.time() - t0, **self._grad_norm_sums()))
                last_save = time.time()
        bar.close()
        train_loss = (acc.reduce(running, "mean") / max(n, 1)).item()
        row = {"epoch": epoch + 1, "stage": si, "stage_name": stage.name, "train_loss": train_loss,
               "lr": self._top_group_lr() if n else lrs[-1], "train_steps": n, "epoch_s": time.time() - t0}
        st = self._gn_stats
        if st["n"]:  # where gradients are clipped (the norm comes with the clip): spikes show here
            row.update(grad_norm_mean=float(st["sum"]) / st["n"], grad_norm_max=float(st["max"]))
        return row

    def _top_group_lr(self) -> float:
        """The LR the top layer group trained with at the last step (the schedule's value, not the
        stage's peak): what an epoch row reports as ``lr``."""
        return float(max(self.optimizer.param_groups, key=lambda g: g["layer_group"])["lr"])

    # ---- outputs --------------------------------------------------------------------------
    def _log_row(self, row: dict) -> None:
        acc = self.accelerator
        shown = {k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items() if k != "stage_name"}
        if self.config.progress:
            self._say(json.dumps(shown))
        if self.out_dir is not None and acc.is_main_process:
            append_metrics(self.out_dir, row, self.history)

    def _checkpoint(self, epoch: int, partial: dict | None = None) -> None:
        """Save after ``epoch`` epochs (and ``partial['step']`` steps of the next one)."""
        if self.out_dir is None or not self.config.checkpoint:
            return
        acc = self.accelerator
        carry = self.hooks.get_carry(self.model) if partial and self.hooks.get_carry else None
        # every rank's own RNG states and carried tensors (each reads its own part of the data)
        ranks = per_rank_state(acc, carry)
        acc.wait_for_everyone()
        if acc.is_main_process:
            path = ckpt.save_training_state(self.out_dir, epoch, self.model, self.optimizer, self.history,
                                            self._best, self._bad_epochs, partial, ranks)
            self._saved = describe(path.name, epoch, partial)
        acc.wait_for_everyone()

    def _grad_norm_sums(self) -> dict:
        st = self._gn_stats
        return dict(gn_sum=float(st["sum"]), gn_n=int(st["n"]), gn_max=float(st["max"]))

    def _skip_done_steps(self, steps, running, bar) -> tuple[int, float]:
        """After a mid-epoch resume: draw (without training) the steps the checkpoint had done, put
        back the epoch's running sums, then the RNGs as they were at the save. Returns the steps done
        and the seconds the epoch had run."""
        part, self._partial = self._partial, None
        if not part:
            return 0, 0.0
        for _ in range(part["step"]):
            if next(steps, None) is None:
                raise UlmfitError(f"the checkpoint is {part['step']} steps into an epoch that now has fewer: the "
                                  "data or the batch size changed since it was saved; start over without --resume")
        running += part["loss_sum"]
        self._gn_stats.update(sum=part["gn_sum"], n=part["gn_n"],
                              max=torch.tensor(part["gn_max"], device=self.accelerator.device))
        if part.get("carry") is not None and self.hooks.set_carry:
            self.hooks.set_carry(self.model, [t.to(self.accelerator.device) for t in part["carry"]])
        set_rng_state(part["rng"])
        bar.update(part["step"])
        return part["step"], part["epoch_s"]

    def _resume(self) -> int:
        """Load the latest checkpoint; returns the epochs it had finished."""
        state = ckpt.load_training_state(self.out_dir, self.model, self.optimizer) if self.out_dir else None
        if state is None:
            return 0
        self.history, self._best, self._bad_epochs = state["history"], state["best"], state["bad_epochs"]
        mine = own_state(state, self.accelerator)  # this rank's RNG states (and carried tensors)
        set_rng_state(mine["rng"])
        self._partial = state["partial"] and {**state["partial"], **mine}
        self._saved = describe(state["path"].name, state["epoch"], self._partial)
        self._say(f"resuming from {self._saved} in {state['path'].parent}")
        return state["epoch"]

    def _say(self, msg: str) -> None:
        """A log line on stderr from the main process (stdout is for results)."""
        if self.accelerator.is_main_process:
            print(msg, file=sys.stderr, flush=True)

    def end(self) -> None:
        """Destroy the process group (else a rank may abort at exit under torchrun)."""
        self._ddp = None
        shutdown_distributed(self.accelerator)
