"""The vision phase: precomputed-head training, then the live body with augmentation, then TTA.

`train_vision` is one plain function of explicit arguments (the CLI maps a config onto it). It
follows fastai's image-classifier recipe (fast.ai course 2018, lesson 1-2): train the head on
precomputed activations, continue with augmentation and the live (still frozen) body, unfreeze
with lower LRs for earlier groups, train with SGDR, predict with test-time augmentation. Every
stage is a core `Stage`, so the core's strategies, schedules, discriminative LRs and LR finder are
used unchanged; a stage whose `lr` is "auto" gets the LR finder's suggestion, found just before it.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ulmfit.core import Hooks, LayerGroups, Stage, TrainConfig, Trainer, lr_find
from ulmfit.core.strategies import stage_from_dict
from ulmfit.errors import UlmfitError
from ulmfit.vision.backbone import VisionModel
from ulmfit.vision.data import AugmentConfig, ImageSet, eval_transform, loader, train_transform
from ulmfit.vision.precompute import precompute


def accuracy(preds, targets) -> float:
    return float((np.asarray(preds) == np.asarray(targets)).mean())


def _bn_hook(model: VisionModel, groups: LayerGroups, train_bn: bool):
    """Without train_bn, BatchNorm of frozen groups keeps its running stats (eval mode)."""
    if train_bn:
        return None

    def on_epoch_start(m, epoch):
        model.freeze_bn_stats(groups.trainable_groups())

    return on_epoch_start


def stages_from_specs(specs, head_only: bool = False) -> tuple[list[Stage], set[int]]:
    """Stages from `Stage`s or dicts of Stage fields; a dict's `lr` may be "auto" (the LR finder's
    suggestion, found just before that stage). Returns the stages and the indices of "auto" ones."""
    stages, auto = [], set()
    for i, spec in enumerate(specs or []):
        d = spec.to_dict() if isinstance(spec, Stage) else dict(spec)
        if isinstance(d.get("lr"), str) and d["lr"].strip().lower() == "auto":
            d["lr"] = 1.0  # placeholder: replaced by the LR finder's suggestion before the stage runs
            auto.add(i)
        if head_only:
            d.update(unfreeze="all", only=None)
        stages.append(stage_from_dict(d))
    return stages, auto


def _fit_with_auto_lr(trainer: Trainer, stages: list[Stage], auto: set[int], lr_find_args: dict,
                      out_dir: Path | None, tag: str) -> tuple[list[dict], list[dict]]:
    """Fit `stages`; before each stage in `auto`, run the LR finder on its trainable groups and use
    the suggestion. Stages between finder runs are fitted together (one optimizer)."""
    history, found, segments = [], [], []
    for i, s in enumerate(stages):
        if i in auto or not segments:
            segments.append([])
        segments[-1].append((i, copy.deepcopy(s)))
    offset = 0
    for seg in segments:
        i, first = seg[0]
        if i in auto:
            trainer.groups.set_trainable(first.trainable(len(trainer.groups)))
            trainer.optimizer = None
            res = lr_find(trainer, lr_factor=first.lr_factor, **lr_find_args)
            first.lr = res.suggestion
            found.append({"phase": tag, "stage": first.name, "suggested_lr": res.suggestion})
            if out_dir is not None:
                res.save(out_dir / f"lr_find_{tag}_{len(found)}")
        trainer.history = []
        for row in trainer.fit([s for _, s in seg]):
            history.append({**row, "phase": tag, "epoch": row["epoch"] + offset})
        offset += sum(int(np.ceil(s.epochs)) for _, s in seg)
    return history, found


def train_vision(model: VisionModel, train: ImageSet, valid: ImageSet | None, augment: AugmentConfig,
                 stages: list, *, precompute_stages: list | None = None,
                 augment_train: bool = True, train_bn: bool = True, batch_size: int = 64,
                 eval_batch_size: int = 256, config: TrainConfig | None = None,
                 cache_dir: str | Path | None = None, tta_n: int = 4, tta_beta: float = 0.25,
                 lr_find_args: dict | None = None, num_workers: int = 0,
                 out_dir: str | Path | None = None) -> dict:
    """Train `model` on `train`; returns {"history", "lr_find", "valid_accuracy", "valid_accuracy_tta"}.

    Stages are core `Stage`s or dicts of their fields; a dict's lr may be "auto" (LR finder).
    - `precompute_stages`: first train the head alone on cached body features (plain images, body in
      eval mode); their `unfreeze`/`only` are ignored (the head is the only group).
    - `stages`: then train with the live body (augmented images unless `augment_train` is False),
      the stages' `unfreeze`/`only` choosing the trainable layer groups (see core strategies).
    - `train_bn`: BatchNorm layers of frozen groups keep training (fastai's default); without it
      they are frozen, running statistics included.
    - With `valid`, accuracy with and without TTA (`tta_n` augmented views blended with weight
      `tta_beta` on the plain prediction) is reported. With `out_dir`, writes model.safetensors,
      vision_model.json, metrics.jsonl, results.json and the LR finder plots there.
    """
    if len(train) == 0:
        raise UlmfitError("the training image set is empty")
    n_classes = model.config["n_classes"]
    if len(train.classes) > n_classes:
        raise UlmfitError(f"the data has {len(train.classes)} classes but the model head has {n_classes}")
    cfg = copy.deepcopy(config) if config is not None else TrainConfig()
    lr_find_args = {"num_it": 100, **(lr_find_args or {})}
    out = Path(out_dir) if out_dir else None
    plain = eval_transform(augment)
    model.config.update({"classes": list(train.classes), "augment": augment.__dict__})
    history, found = [], []

    model.to(_train_device(cfg))  # the body computes cached features where the head then trains
    if precompute_stages:
        cache = Path(cache_dir) if cache_dir else None
        key = json.dumps({"size": augment.size, "mean": augment.mean, "std": augment.std})
        feats = precompute(model, train, plain, cache / "train_features.safetensors" if cache else None,
                           eval_batch_size, key)
        vfeats = (precompute(model, valid, plain, cache / "valid_features.safetensors" if cache else None,
                             eval_batch_size, key) if valid is not None else None)
        head = model.head
        trainer = Trainer(head, LayerGroups(head, [head]), nn.functional.cross_entropy,
                          DataLoader(feats, batch_size=batch_size, shuffle=True),
                          DataLoader(vfeats, batch_size=eval_batch_size) if vfeats is not None else None,
                          cfg, metrics={"accuracy": accuracy})
        head_stages, auto = stages_from_specs(precompute_stages, head_only=True)
        h, f = _fit_with_auto_lr(trainer, head_stages, auto, lr_find_args, out, "precomputed")
        history += h
        found += f

    live_stages, auto = stages_from_specs(stages)
    if live_stages:
        groups = model.layer_groups(train_bn)
        tfm = train_transform(augment) if augment_train else plain
        trainer = Trainer(model, groups, nn.functional.cross_entropy,
                          loader(train, tfm, batch_size, shuffle=True, num_workers=num_workers),
                          loader(valid, plain, eval_batch_size, num_workers=num_workers) if valid is not None else None,
                          cfg, hooks=Hooks(on_epoch_start=_bn_hook(model, groups, train_bn)),
                          metrics={"accuracy": accuracy})
        h, f = _fit_with_auto_lr(trainer, live_stages, auto, lr_find_args, out, "live")
        history += h
        found += f

    result = {"history": history, "lr_find": found}
    if valid is not None:
        result.update(evaluate_tta(model, valid, augment, tta_n, tta_beta, eval_batch_size, cfg.seed))
    if out is not None:
        _write_outputs(out, model, result)
    return result


def _train_device(cfg: TrainConfig) -> torch.device:
    """The device the Trainer's accelerator will pick: this process's GPU, else the CPU."""
    if cfg.cpu or not torch.cuda.is_available():
        return torch.device("cpu")
    from accelerate import PartialState

    return PartialState().device


def _write_outputs(out: Path, model: VisionModel, result: dict) -> None:
    from ulmfit.core.checkpoint import atomic_write_text

    out.mkdir(parents=True, exist_ok=True)
    model.save(out)
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in result["history"]))
    summary = {k: v for k, v in result.items() if k != "history"}
    atomic_write_text(out / "results.json", json.dumps(summary, indent=1))


@torch.no_grad()
def predict(model: VisionModel, images: ImageSet, augment: AugmentConfig, tta_n: int = 0,
            beta: float = 0.25, batch_size: int = 256, seed: int = 0) -> torch.Tensor:
    """Class probabilities (N, K). With `tta_n` > 0, test-time augmentation as fastai's `Learner.tta`:
    the mean of `tta_n` augmented views' probabilities, blended with the plain prediction as
    `lerp(augmented, plain, beta)` = (1 - beta) * augmented + beta * plain. tta_n=0 is plain."""
    if tta_n < 0 or not 0 <= beta <= 1:
        raise UlmfitError(f"need tta_n >= 0 and 0 <= tta_beta <= 1; got {tta_n} and {beta}")
    was = model.training
    model.eval()
    device = next(model.parameters()).device

    def run(tfm):
        return torch.cat([model(x.to(device)).float().softmax(-1).cpu()
                          for x, _ in DataLoader(images.dataset(tfm), batch_size=batch_size)])

    try:
        probs = run(eval_transform(augment))
        if tta_n:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(seed)
                aug = torch.stack([run(train_transform(augment)) for _ in range(tta_n)]).mean(0)
            probs = torch.lerp(aug, probs, beta)
    finally:
        model.train(was)
    return probs


def evaluate_tta(model: VisionModel, images: ImageSet, augment: AugmentConfig, tta_n: int = 4,
                 beta: float = 0.25, batch_size: int = 256, seed: int = 0) -> dict:
    """Accuracy of plain predictions and (with tta_n > 0) of TTA predictions on `images`."""
    targets = images.labels
    plain = predict(model, images, augment, 0, beta, batch_size)
    out = {"valid_accuracy": float((plain.argmax(-1) == targets).float().mean())}
    if tta_n:
        tta = predict(model, images, augment, tta_n, beta, batch_size, seed)
        out["valid_accuracy_tta"] = float((tta.argmax(-1) == targets).float().mean())
    return out
