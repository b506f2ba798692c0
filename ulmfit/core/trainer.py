"""The one training loop, on Hugging Face `accelerate`.

For each stage of a strategy: set which layer groups train; for each epoch and batch: schedule
step, forward, loss (+ a model's extra loss such as AR/TAR), backward, clip, optimizer step;
evaluate; write metrics; checkpoint. The same code runs on a CPU, one GPU, or many processes
(DDP over gloo or NCCL): `torchrun --nproc_per_node N script.py` or `accelerate launch`.

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
from ulmfit.core.checkpoint import append_metrics
from ulmfit.core.accel import (allow_new_precision, cat_numpy, gather_ragged, resolve_mixed_precision,
                               shutdown_distributed)
from ulmfit.core.groups import LayerGroups, lr_spec_to_list, set_group_lrs
from ulmfit.core.schedules import make_schedule
from ulmfit.core.seed import set_seed
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
    @torch.no_grad()
    def _share_buffers(self) -> None:
        """Rank 0's buffers (BatchNorm running statistics) on every rank before evaluating: DDP copies
        them only before a training forward, so after the last step each rank holds its own batch's
        update, and rank 1 would score a model slightly unlike the one rank 0 saves."""
        import torch.distributed as dist

        for b in self.model.buffers():
            dist.broadcast(b.data, src=0)

    @torch.no_grad()
    def evaluate(self, loader=None, prefix: str = "valid", full_precision: bool = False) -> dict:
        """Loss and metrics over ``loader`` (default: the validation loader). ``full_precision``
        runs outside autocast, as a saved model is evaluated later (final test figures)."""
        loader = self.valid_loader if loader is None else self._prepare_loader(loader)
        if loader is None:
            return {}
        acc = self.accelerator
        if acc.num_processes > 1:
            self._share_buffers()
        self.model.eval()
        if self.hooks.on_eval_start:
            self.hooks.on_eval_start(self.model)
        loss_sum = torch.zeros((), dtype=torch.float64, device=acc.device)
        count = torch.zeros((), dtype=torch.float64, device=acc.device)
        preds, targs = [], []
        # accelerate's loaders give every rank the same number of equal batches (per-batch gather);
        # a domain iterable may not (sorted-length classification batches): gather once at the end
        per_batch = isinstance(loader, torch.utils.data.DataLoader) or acc.num_processes == 1
        from tqdm.auto import tqdm

        # tqdm takes the total from len(loader) where the loader has one
        for batch in tqdm(loader, desc=prefix, leave=False, dynamic_ncols=True,
                          disable=not (self.config.progress and acc.is_main_process)):
            loss, output, targets = self._loss(batch, train=False, full_precision=full_precision)
            token_level = targets.ndim == 2 and not targets.is_floating_point()
            # token-level targets (LMs) count real tokens; -100 marks ignored positions (MLM)
            n = (targets != -100).sum() if token_level else (targets.shape[0] if targets.ndim else 1)
            loss_sum += loss.detach().double() * n
            count += n
            if self.metrics:
                p = self.hooks.predict(output) if self.hooks.predict else output.argmax(-1)
                if token_level:  # LM: one prediction per token
                    p, targets = p.reshape(-1), targets.reshape(-1)
                p, t = p.contiguous(), targets.contiguous()
                if per_batch:
                    p, t = acc.gather_for_metrics((p, t))
                preds.append(p.cpu())
                targs.append(t.cpu())
        if self.metrics and not per_batch:
            preds, targs = gather_ragged(preds, targs)
        loss_sum, count = acc.reduce(loss_sum), acc.reduce(count)
        self.model.train()
        out = {}
        if count.item() > 0:
            mean = (loss_sum / count).item()
            out[f"{prefix}_loss"] = mean
            for name, fn in self.loss_metrics.items():
                out[f"{prefix}_{name}"] = float(fn(mean))
        if preds:
            p, t = cat_numpy(preds), cat_numpy(targs)
            for name, fn in self.metrics.items():
                out[f"{prefix}_{name}"] = float(fn(p, t))
        return out

    # ---- the loop -------------------------------------------------------------------------
    def fit(self, stages: list[Stage], resume: bool = False) -> list[dict]:
        """Train through `stages`; with `resume`, continue from the latest checkpoint in out_dir."""
        if not stages:
            raise UlmfitError("a strategy needs at least one stage")
        cfg = self.config
        n_groups = len(self.groups)
        schedules = [make_schedule(s.schedule, **s.schedule_args) for s in stages]
        base = [lr_spec_to_list(s.lr, n_groups, s.lr_factor) for s in stages]
        self._make_optimizer(base[0])
        done = 0
        best, bad_epochs = None, 0
        if resume:
            done, best, bad_epochs = self._resume()
        self._position = (done + 1, 0)
        try:
            return self._fit_stages(stages, schedules, base, done, best, bad_epochs)
        except KeyboardInterrupt:
            epoch, step = self._position
            kept = (f"the checkpoint after epoch {epoch - 1} is kept; " if epoch > 1 and self.out_dir
                    and cfg.checkpoint else "")
            raise Interrupted(f"interrupted at epoch {epoch} step {step}; {kept}resume with --resume") from None

    def _fit_stages(self, stages, schedules, base, done: int, best, bad_epochs: int) -> list[dict]:
        cfg = self.config
        spe = self.steps_per_epoch()
        epoch = 0
        start_time = time.time() - (self.history[-1]["elapsed_s"] if self.history else 0.0)
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
                    v = row[cfg.monitor]
                    better = best is None or (v < best if cfg.monitor_mode == "min" else v > best)
                    best, bad_epochs = (v, 0) if better else (best, bad_epochs + 1)
                    stop = bad_epochs > cfg.early_stopping_patience
                epoch += 1
                self._checkpoint(epoch, best, bad_epochs)
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
        n = 0
        self._reset_grad_norms()
        t0 = time.time()
        for i, batches in enumerate(self._batches(self.train_loader, steps_this)):
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

    def _checkpoint(self, epoch: int, best, bad_epochs: int) -> None:
        if self.out_dir is None or not self.config.checkpoint:
            return
        acc = self.accelerator
        acc.wait_for_everyone()
        if acc.is_main_process:
            ckpt.save_training_state(self.out_dir, epoch, self.model, self.optimizer, self.history, best, bad_epochs)
        acc.wait_for_everyone()

    def _resume(self):
        state = ckpt.load_training_state(self.out_dir, self.model, self.optimizer) if self.out_dir else None
        if state is None:
            return 0, None, 0
        self.history = state["history"]
        self._say(f"resuming after epoch {state['epoch']} from {state['path']}")
        return state["epoch"], state["best"], state["bad_epochs"]

    def _say(self, msg: str) -> None:
        """A log line on stderr from the main process (stdout is for results)."""
        if self.accelerator.is_main_process:
            print(msg, file=sys.stderr, flush=True)

    def end(self) -> None:
        """Destroy the process group (else a rank may abort at exit under torchrun)."""
        self._ddp = None
        shutdown_distributed(self.accelerator)
