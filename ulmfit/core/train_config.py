"""The trainer's settings (:class:`TrainConfig`) and the few places a domain plugs into the loop
(:class:`Hooks`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass
class TrainConfig:
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    betas: tuple = (0.9, 0.99)
    eps: float = 1e-6
    clip: float | None = 0.25
    grad_accum: int = 1
    mixed_precision: str = "no"            # no | bf16 | fp16 | auto
    early_stopping_patience: int | None = None
    monitor: str = "valid_loss"
    monitor_mode: str = "min"
    progress: bool = True
    seed: int = 42
    max_steps_per_epoch: int | None = None  # cap batches per epoch (quick runs, smoke tests)
    flush_denormal: bool = True
    log_every: int = 10
    cpu: bool = False                       # force the CPU even where a GPU is available
    checkpoint: bool = True                 # write a resumable checkpoint after each epoch (needs out_dir)
    checkpoint_minutes: float | None = 30.0 # and inside an epoch at least this often (long epochs on a CPU)
    checkpoint_steps: int | None = None     # and inside an epoch every this many steps
    num_threads: int | None = None          # torch CPU threads (None: torch's default)


@dataclass
class Hooks:
    """The few places a domain plugs into the loop (all optional).

    - split_batch(batch) -> (inputs, targets); inputs is passed to the model as one argument.
    - loss_extra(model, output, targets) -> tensor added to the loss in training (AR/TAR).
    - on_epoch_start(model, epoch) / on_eval_start(model): e.g. reset an RNN's hidden state.
    - lr_scale(batch) -> float: multiply the LR for this batch (variable-length BPTT).
    - predict(output) -> tensor of predictions for metric functions (default argmax(-1)).
    - forward(model, inputs, targets, train) -> output: how to call the model (default
      `model(inputs)`); e.g. an LM that fuses its decoder with the loss when given the targets.
    - get_carry(model) -> list of tensors the model carries from one batch to the next (an RNN LM's
      hidden state), kept by checkpoints inside an epoch; set_carry(model, tensors) puts them back.
    """

    split_batch: Callable | None = None
    loss_extra: Callable | None = None
    on_epoch_start: Callable | None = None
    on_eval_start: Callable | None = None
    lr_scale: Callable | None = None
    predict: Callable | None = None
    forward: Callable | None = None
    get_carry: Callable | None = None
    set_carry: Callable | None = None
