"""`ulmfit compare` on a vision recipe (`modality: image`, e.g. configs/vision-digits.yaml).

The recipe's `pretrain` runs once (reused from <out>/pretrain when finished); every run then
transfers it with one strategy, one seed and one labelled-set size (images per class), the rest
of the recipe equal. The labelled images (`few_shot`, seeded by the run's seed) and a validation
set of `transfer.valid_size` other images (default 200, for the per-epoch curves only: nothing is
selected on it) come from the transfer pool; every run is scored on the same held-out test set.

Strategies: the core's `gradual`, `full`, `chain_thaw`, `head_only` (the head trained on
precomputed body features), and the ablations `no_pretraining` (random weights, all groups),
`precomputed_head` (head on precomputed features, then everything unfrozen) and `fastai` (fastai's
image recipe: precompute, augmented frozen head, unfreeze with SGDR). Sizes: images per class,
default `transfer.per_class`; `all` takes the whole pool but the validation images.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from sklearn.metrics import f1_score

from ulmfit.compare.rows import guarded_run
from ulmfit.core.checkpoint import atomic_write_text
from ulmfit.errors import UlmfitError
from ulmfit.phases.vision import augment_for, fit_method, pretrain, split, stage_epochs
from ulmfit.phases.vision_config import vision_recipe
from ulmfit.vision import few_shot, load_builtin
from ulmfit.vision.train import predict

STRATEGIES = {"gradual": "gradual", "full": "full", "chain_thaw": "chain_thaw", "head_only": "head_only",
              "no_pretraining": "scratch", "precomputed_head": "precomputed_head", "fastai": "fastai"}


class VisionRuns:
    """Runs of one vision comparison; `run(strategy, seed, size, run_dir)` returns a results row."""

    def __init__(self, raw: dict, root: Path, quiet: bool):
        for key in ("model", "augment", "pretrain", "transfer"):
            if not isinstance(raw.get(key), dict):
                raise UlmfitError(f"the vision recipe has no `{key}` section")
        self.cfg, self.root, self.quiet = vision_recipe(raw), root, quiet
        self.times: dict[str, float] = {}
        self._pool = self._test = self._pre = None

    def default_sizes(self) -> list:
        return list(self.cfg.transfer.per_class or ["all"])

    def _setup(self):
        if self._pre is None:
            t0, reused = time.time(), (self.root / "pretrain" / "results.json").exists()
            # pretrain() prints its JSON line: keep stdout for compare's own summary
            with open(os.devnull, "w") if self.quiet else contextlib.nullcontext(sys.stderr) as echo, \
                    open(self.root / "pretrain.jsonl", "a", encoding="utf-8") as sink, contextlib.redirect_stdout(echo):
                self._pre = pretrain(self.cfg, self.root, sink)
            self.times["pretrain (reused)" if reused else "pretrain"] = round(time.time() - t0, 1)
            t = self.cfg.transfer
            self._pool, self._test = split(load_builtin(t.data), t.test_size, self.cfg.train.seed)
        return self._pre, self._pool, self._test

    def _data(self, size: int | None, seed: int):
        _, pool, _ = self._setup()
        n_valid = self.cfg.transfer.valid_size
        if size is None:
            return split(pool, n_valid, seed)
        labelled, rest = few_shot(pool, size, seed)
        pick = np.random.default_rng([seed, 1]).permutation(len(rest))[:n_valid]
        return labelled, rest.subset(sorted(pick))

    def run(self, strategy: str, seed: int, size: int | None, run_dir: Path) -> dict:
        return guarded_run(strategy, seed, size, run_dir, lambda: self._train(strategy, seed, size, run_dir))

    def _train(self, strategy: str, seed: int, size: int | None, run_dir: Path) -> dict:
        cfg = self.cfg
        pre_run, _, test = self._setup()
        labelled, valid = self._data(size, seed)
        aug = augment_for(cfg, labelled)
        t0 = time.time()
        pretrained, pre, live, model, res = fit_method(
            cfg, STRATEGIES[strategy], pre_run, labelled, valid, aug,
            self.root / "cache" / f"n{size or 'all'}-s{seed}", seed=seed, tta_n=0)
        wall = time.time() - t0
        probs = predict(model, test, aug, 0)
        preds, y = probs.argmax(-1).numpy(), test.labels.numpy()
        metrics = {"method": STRATEGIES[strategy], "pretrained": pretrained, "n_train": len(labelled),
                   "n_valid": len(valid), "n_test": len(test), "wall_s": round(wall, 2),
                   "epochs": stage_epochs(live) + stage_epochs(pre),
                   "valid_accuracy": res["valid_accuracy"], "test_accuracy": float((preds == y).mean()),
                   "test_macro_f1": float(f1_score(y, preds, average="macro")),
                   "lr_find": [x["suggested_lr"] for x in res["lr_find"]]}
        if cfg.tta.n:
            tp = predict(model, test, aug, cfg.tta.n, cfg.tta.beta, seed=seed)
            metrics["test_accuracy_tta"] = float((tp.argmax(-1).numpy() == y).mean())
        atomic_write_text(run_dir / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in _cumulative(res["history"])))
        atomic_write_text(run_dir / "metrics.json", json.dumps(metrics, indent=1))
        return metrics


def _cumulative(history: list[dict]) -> list[dict]:
    """Epoch rows with `elapsed_s` counted from the run's start (the precomputed-head trainer and
    the live trainer each count from their own start)."""
    out, offset, last = [], 0.0, 0.0
    for r in history:
        e = float(r.get("elapsed_s", 0.0))
        if e < last:
            offset += last
        last = e
        out.append({**r, "elapsed_s": round(offset + e, 3)})
    return out
