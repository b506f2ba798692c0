"""`ulmfit compare`: fine-tuning strategies and ablations, seeds and low-shot sizes, side by side.

Every run is phase 3 (and, for the LM ablations, a phase-2 variant) with one strategy, one seed
and one labelled-set size; everything else comes from the same recipe. Phase 1 runs at most once
per compare (or not at all when the recipe names a `pretrained` LM), each phase-2 variant runs
once and is shared by every strategy, seed and size that uses it.

    out/
      recipe.yaml                  the recipe after --set overrides (without its `compare` section)
      lm/pretrain, lm/finetune...  the shared phase 1 / phase 2 outputs
      runs/<strategy>-s<seed>-n<size>/   one train-classifier output per run
      results.csv  summary.md  accuracy.png  valid_vs_time.png  [lowshot.png]

A vision recipe (`modality: image`) compares the same way through ulmfit.vision.compare_runs: its
pretraining runs once, each run transfers it with one strategy, seed and images-per-class size.

Resumable: a run whose metrics.json exists is read back, not re-run; a run that raises is
recorded with status `failed` and its error, and the others go on.

Strategies: `gradual`, `full`, `chain_thaw`, `head_only` (core strategies, with the same epoch
budget as the recipe's classifier), and the ablations `no_pretraining` (random encoder),
`no_lm_finetuning` (the pretrained LM straight to phase 3), `lm_no_discriminative`, `lm_no_stlr`
(phase 2 without discriminative LRs / with one-cycle instead of STLR), `one_cycle` and `stlr`
(the classifier's schedule). A recipe may add or adjust strategies in a `compare:` section:

    compare:
      strategies: [gradual, full, my_variant]
      seeds: 3
      train_sizes: [100, all]
      overrides:                   # per strategy, --set style, relative to the recipe root
        full: [classifier.train.lr=0.001]
        my_variant: [classifier.train.lr_factor=null]   # unknown names start from `gradual`
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
import traceback
from pathlib import Path

from ulmfit.config import (ClassifierConfig, FinetuneLMConfig, PretrainConfig, apply_overrides, from_dict,
                           load_yaml)
from ulmfit.errors import UlmfitError

CORE = ("gradual", "full", "chain_thaw", "head_only")
ABLATIONS = ("no_pretraining", "no_lm_finetuning", "lm_no_discriminative", "lm_no_stlr", "one_cycle", "stlr")
LM_ABLATION = {"lm_no_discriminative": ["finetune_lm.train.lr_factor=null"],
               "lm_no_stlr": ["finetune_lm.train.schedule=one_cycle"]}


def _log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def _csv_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def _size(v) -> int | None:
    """A train size: a positive int, or None for `all`."""
    if v is None or str(v).strip().lower() in ("all", "none", "full", "0"):
        return None
    try:
        n = int(str(v).strip())
    except ValueError:
        raise UlmfitError(f"train size {v!r} must be a positive integer or 'all'") from None
    if n <= 0:
        raise UlmfitError(f"train size {v!r} must be a positive integer or 'all'")
    return n


def _seeds(v) -> list[int]:
    """`3` means seeds 0, 1, 2; a list (or "1,7,42") names them."""
    items = _csv_list(v)
    try:
        if len(items) == 1 and not isinstance(v, (list, tuple)):
            n = int(items[0])
            if n < 1:
                raise ValueError
            return list(range(n))
        return [int(s) for s in items]
    except ValueError:
        raise UlmfitError(f"--seeds must be a count (e.g. 3) or a list of integers, got {v!r}") from None


# ---- strategies -> config overrides ----------------------------------------------------------

def _budget(clf: ClassifierConfig) -> tuple[float, float, float]:
    """(total epochs, head LR, all-groups LR) of the recipe's classifier schedule: `full` and
    `head_only` get the same epoch budget, `full` the LR of the last (all-groups) stage, `head_only`
    the LR of the first (head) stage."""
    ep, lr = clf.train.epochs, clf.train.lr
    if isinstance(ep, (list, tuple)):
        total = float(sum(ep))
    else:
        total = float(ep) + (3 if clf.train.strategy == "gradual" else 0)  # gradual: 1 + 1 + 1 + epochs
    per_stage = isinstance(lr, (list, tuple)) and isinstance(ep, (list, tuple)) and len(lr) == len(ep) > 1
    head, whole = (lr[0], lr[-1]) if per_stage else (lr, lr)
    return total, head, whole


def _n_groups(clf: ClassifierConfig, encoder: str | None) -> int | None:
    """Layer groups of the AWD-LSTM classifier (embedding, each LSTM, head); None if unknown."""
    if clf.model.type != "awd_lstm":
        return None
    if encoder and (Path(encoder) / "lm_config.json").exists():
        return int(json.loads((Path(encoder) / "lm_config.json").read_text())["n_layers"]) + 2
    from ulmfit.phases import _awd_config

    return _awd_config(clf.model, 10).n_layers + 2


def strategy_plan(name: str, clf: ClassifierConfig, extra: list[str]) -> dict:
    """What one strategy changes: `lm` (finetuned | pretrained | none), phase-2 overrides and
    classifier overrides (both `finetune_lm.` / `classifier.`-prefixed, --set style)."""
    total, head, whole = _budget(clf)
    lm, ft, cl = "finetuned", [], []
    if name == "gradual" or name not in CORE + ABLATIONS:
        if clf.train.strategy != "gradual":
            cl = ["classifier.train.strategy=gradual"]
    elif name == "full":
        cl = ["classifier.train.strategy=full", f"classifier.train.epochs={total:g}",
              f"classifier.train.lr={json.dumps(whole)}"]
    elif name == "head_only":
        cl = ["classifier.train.strategy=head_only", f"classifier.train.epochs={total:g}",
              f"classifier.train.lr={json.dumps(head)}"]
    elif name == "chain_thaw":
        cl = ["classifier.train.strategy=chain_thaw"]  # epochs / lr filled in once the encoder is known
    elif name == "no_pretraining":
        lm = "none"
    elif name == "no_lm_finetuning":
        lm = "pretrained"
    elif name in LM_ABLATION:
        ft = list(LM_ABLATION[name])
    elif name in ("one_cycle", "stlr"):
        cl = [f"classifier.train.schedule={name}"]
    for o in extra:
        key = o.split("=", 1)[0].strip()
        if key.startswith("finetune_lm."):
            ft.append(o)
        elif key.startswith("classifier."):
            cl.append(o)
        else:
            raise UlmfitError(f"compare override {o!r} for strategy {name!r} must start with "
                              "classifier. or finetune_lm.")
    return {"lm": lm, "finetune": ft, "classifier": cl, "chain_thaw": name == "chain_thaw",
            "budget": (total, head, whole)}


def _chain_thaw_overrides(plan: dict, clf: ClassifierConfig, encoder: str | None) -> list[str]:
    """Chain-thaw (head, each group alone bottom-up, then all) in the same epoch budget; the head
    stage gets the head LR, each lone group exactly the all-groups LR (so discriminative factors
    do not shrink it), the last stage the all-groups LR with discriminative factors."""
    n = _n_groups(clf, encoder)
    total, head, whole = plan["budget"]
    if n is None or not isinstance(whole, (int, float)) or not isinstance(head, (int, float)):
        return [f"classifier.train.epochs={total:g}"]
    f = clf.train.lr_factor or 1.0
    lrs = [head] + [float(f"{whole * f ** (n - 1 - i):.6g}") for i in range(n - 1)] + [whole]
    return [f"classifier.train.epochs={round(total / (n + 1), 4):g}", f"classifier.train.lr={json.dumps(lrs)}"]


# ---- shared LM phases --------------------------------------------------------------------------

class LMs:
    """Phase 1 and the phase-2 variants, each run once (and reused when its metrics.json exists)."""

    def __init__(self, raw: dict, root: Path, quiet: bool):
        self.raw, self.root, self.quiet = raw, root, quiet
        self.variants: dict[tuple, str] = {}
        self.failed: dict[str, str] = {}
        self.times: dict[str, float] = {}
        self._pretrained: str | None = None

    def _phase(self, name: str, fn, cfg, tag: str) -> str:
        out = Path(cfg.out)
        if tag in self.failed:  # a shared phase that failed once is not retried for every run
            raise UlmfitError(f"shared {name} ({tag}) failed: {self.failed[tag]}")
        if (out / "metrics.json").exists():
            _log(f"compare: {tag}: reusing {out}", self.quiet)
            self.times[tag] = json.loads((out / "metrics.json").read_text()).get("wall_s", 0.0)
            return str(out)
        shutil.rmtree(out, ignore_errors=True)
        _log(f"compare: {tag} -> {out}", self.quiet)
        try:
            self.times[tag] = fn(cfg, quiet=True).get("wall_s", 0.0)
        except Exception as e:  # noqa: BLE001
            self.failed[tag] = f"{type(e).__name__}: {e}"
            raise UlmfitError(f"shared {name} ({tag}) failed: {self.failed[tag]}") from e
        return str(out)

    def pretrained(self) -> str:
        if self._pretrained is None:
            self._pretrained = self._get_pretrained()
        return self._pretrained

    def architecture(self) -> list[str]:
        """`classifier.model.*` overrides that give a random encoder (no_pretraining) the same
        architecture as the pretrained LM, read from the recipe without running anything."""
        keys = ("emb_size", "n_hid", "n_layers")
        ft = self.raw.get("finetune_lm") or {}
        src = Path(str(ft.get("pretrained") or "")) / "lm_config.json"
        if ft.get("pretrained") and src.exists():
            d = json.loads(src.read_text(encoding="utf-8"))
            return [f"classifier.model.{k}={d[k]}" for k in keys if d.get(k)]
        m = (self.raw.get("pretrain") or {}).get("model") or {}
        return [f"classifier.model.{k}={m[k]}" for k in ("arch",) + keys if m.get(k) is not None]

    def _get_pretrained(self) -> str:
        ft = self.raw.get("finetune_lm") or {}
        if ft.get("pretrained"):
            return str(ft["pretrained"])
        if not self.raw.get("pretrain"):
            raise UlmfitError("this comparison needs a pretrained LM: give the recipe a `pretrain` section or "
                              "set finetune_lm.pretrained to an LM folder")
        from ulmfit.phases import pretrain

        cfg = from_dict(PretrainConfig, {**self.raw["pretrain"], "out": str(self.root / "pretrain")}, "pretrain.")
        return self._phase("pretrain", pretrain, cfg, "pretrain")

    def pretrained_encoder(self) -> str:
        """The pretrained LM as a phase-3 encoder folder (phase 3 reads encoder.safetensors)."""
        src = Path(self.pretrained())
        if (src / "encoder.safetensors").exists():
            return str(src)
        dst = self.root / "pretrained-encoder"
        if not (dst / "encoder.safetensors").exists():
            from ulmfit.core.checkpoint import save_weights
            from ulmfit.text.lm_io import load_lm

            if not (src / "lm_config.json").exists():
                raise UlmfitError(f"no_lm_finetuning needs an LM folder of ours (lm_config.json), got {src}")
            dst.mkdir(parents=True, exist_ok=True)
            for f in [src / "lm_config.json", *src.glob("tokenizer*")]:
                shutil.copy2(f, dst / f.name)
            save_weights(load_lm(src)[0].encoder, dst / "encoder.safetensors")
        return str(dst)

    def finetuned(self, overrides: list[str], label: str) -> str:
        key = tuple(sorted(overrides))
        if key in self.variants:
            return self.variants[key]
        if not self.raw.get("finetune_lm"):
            raise UlmfitError(f"strategy {label!r} needs phase 2: give the recipe a `finetune_lm` section "
                              "(or set classifier.encoder to a fine-tuned LM)")
        from ulmfit.phases import finetune_lm

        data = apply_overrides({"finetune_lm": copy.deepcopy(self.raw["finetune_lm"])}, list(overrides))
        section = dict(data["finetune_lm"])
        section["pretrained"] = self.pretrained()
        tag = "finetune" if not key else f"finetune-{label}"
        section["out"] = str(self.root / tag)
        self.variants[key] = self._phase("finetune_lm", finetune_lm,
                                         from_dict(FinetuneLMConfig, section, "finetune_lm."), tag)
        return self.variants[key]


# ---- one run -----------------------------------------------------------------------------------

def _run_name(strategy: str, seed: int, size: int | None) -> str:
    return f"{strategy}-s{seed}-n{size if size else 'all'}"


def _history(run_dir: Path) -> list[dict]:
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def _row(strategy, seed, size, run_dir: Path, metrics: dict | None, error: str = "", reused=False) -> dict:
    hist = _history(run_dir)
    accs = [(r.get("valid_accuracy"), r.get("epoch")) for r in hist if r.get("valid_accuracy") is not None]
    best = max(accs, key=lambda a: a[0]) if accs else (None, None)
    m = metrics or {}
    return {"strategy": strategy, "seed": seed, "train_size": size if size else "all",
            "n_train": m.get("n_train"), "epochs": m.get("epochs", len(hist) or None), "wall_s": m.get("wall_s"),
            "valid_accuracy": m.get("valid_accuracy"), "valid_macro_f1": m.get("valid_macro_f1"),
            "test_accuracy": m.get("test_accuracy"), "test_macro_f1": m.get("test_macro_f1"),
            "best_epoch": best[1], "best_valid_accuracy": best[0], "status": "failed" if error else "ok",
            "error": error, "reused": reused, "run_dir": str(run_dir)}


def guarded_run(strategy: str, seed: int, size, run_dir: Path, train) -> dict:
    """The results row of one run: read back when its metrics.json exists (resume), else `train()`
    (-> metrics dict) in a fresh `run_dir`; a run that raises is recorded (error.txt, status
    `failed`) so the others go on."""
    if (run_dir / "metrics.json").exists():
        return _row(strategy, seed, size, run_dir, json.loads((run_dir / "metrics.json").read_text()), reused=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    try:
        return _row(strategy, seed, size, run_dir, dict(train()))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a crashed run is recorded and the others go on
        msg = f"{type(e).__name__}: {e}".replace("\n", " ")[:500]
        (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return _row(strategy, seed, size, run_dir, None, error=msg)


def _one_run(strategy, plan, seed, size, clf_section: dict, lms: LMs, explicit_encoder, run_dir: Path,
             quiet: bool) -> dict:
    from ulmfit.phases import train_classifier

    def train():
        sets = list(plan["classifier"])
        if any(o.split("=", 1)[0].strip() == "classifier.encoder" for o in sets):
            encoder = "keep"
        elif plan["lm"] == "none":
            encoder = None
            model = clf_section.get("model") or {}
            sets = [o for o in lms.architecture() if o.split("=")[0].split(".")[-1] not in model] + sets
        elif plan["lm"] == "pretrained":
            encoder = lms.pretrained_encoder()
        elif explicit_encoder is not None and not plan["finetune"]:
            encoder = explicit_encoder
        else:
            encoder = lms.finetuned(plan["finetune"], strategy)
        data = {"classifier": copy.deepcopy(clf_section)}
        if encoder != "keep":
            data["classifier"]["encoder"] = encoder
        data = apply_overrides(data, sets)
        section = dict(data["classifier"])
        if plan["chain_thaw"]:
            base = from_dict(ClassifierConfig, section, "classifier.")
            data = apply_overrides(data, _chain_thaw_overrides(plan, base, base.encoder) + sets[1:])
            section = dict(data["classifier"])
        section["train"] = {**(section.get("train") or {}), "seed": seed}
        section["data"] = {**(section.get("data") or {}), "train_size": size}
        section["out"] = str(run_dir)
        return train_classifier(from_dict(ClassifierConfig, section, "classifier."), quiet=True)

    return guarded_run(strategy, seed, size, run_dir, train)


def _warm_up() -> None:
    """Import what phase 3 imports lazily, so the first run's wall time is not inflated by it."""
    import importlib

    for m in ("sklearn.metrics", "matplotlib.pyplot", "datasets", "accelerate", "ulmfit.text.readers",
              "ulmfit.text.class_data", "ulmfit.text.text_classifier", "ulmfit.text.lm_train"):
        try:
            importlib.import_module(m)
        except ImportError:
            pass


# ---- the comparison ----------------------------------------------------------------------------

def _split_recipe(config_path: str, overrides: list[str] | None) -> tuple[dict, dict]:
    raw = apply_overrides(load_yaml(config_path), list(overrides or []))
    comp = raw.pop("compare", None) or {}
    if not isinstance(comp, dict):
        raise UlmfitError(f"{config_path}: `compare` must be a mapping")
    if raw.get("modality") == "image":
        return raw, comp
    if not any(k in raw for k in ("pretrain", "finetune_lm", "classifier")):
        raw = {"classifier": {k: v for k, v in raw.items() if k != "out"}}  # a plain phase-3 config
    if not raw.get("classifier"):
        raise UlmfitError(f"{config_path}: the recipe has no `classifier` section to compare strategies on")
    return raw, comp


def compare(config_path: str, strategies=None, seeds=None, out: str | None = None, train_sizes=None,
            ablations=None, overrides: list[str] | None = None, quiet: bool = False) -> dict:
    """Run every (train size, strategy, seed) of a recipe and write results.csv, summary.md and plots
    to `out`; returns a summary dict (the CLI prints it as JSON). `strategies`, `seeds`,
    `train_sizes` default to the recipe's `compare` section (else gradual+full, 3 seeds, all)."""
    import yaml

    from ulmfit import compare_plots

    raw, comp = _split_recipe(config_path, overrides)
    vision = raw.get("modality") == "image"
    if vision:
        try:
            from ulmfit.vision.compare_runs import STRATEGIES as VISION, VisionRuns
        except ImportError as e:
            raise UlmfitError(f"comparing a vision recipe needs torchvision: pip install 'ulmfit[vision]' ({e})") \
                from None
    known = tuple(VISION) if vision else CORE + ABLATIONS
    names = _csv_list(strategies) or _csv_list(comp.get("strategies")) or ["gradual", "full"]
    names += [a for a in _csv_list(ablations) if a not in names]
    names = list(dict.fromkeys(n.strip().lower().replace("-", "_") for n in names))
    extra = {} if vision else (comp.get("overrides") or {})
    unknown = [n for n in names if n not in known and n not in extra]
    if unknown:
        import difflib

        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        more = "" if vision else " or define it under compare.overrides in the recipe"
        raise UlmfitError(f"unknown strategy {unknown[0]!r}{hint}; choose from {', '.join(known)}{more}")
    seed_list = _seeds(seeds if seeds is not None else comp.get("seeds", 3))
    root = Path(out or comp.get("out") or Path(raw.get("out", "runs/compare")) / "compare")
    root.mkdir(parents=True, exist_ok=True)
    if vision:
        runner = VisionRuns(raw, root, quiet)
        default_sizes = runner.default_sizes()
    else:
        default_sizes = ["all"]
    sizes = [_size(s) for s in (_csv_list(train_sizes) or _csv_list(comp.get("train_sizes")) or default_sizes)]
    sizes = list(dict.fromkeys(sizes))
    from ulmfit.core.checkpoint import atomic_write_text

    atomic_write_text(root / "recipe.yaml", yaml.safe_dump(raw, sort_keys=False))
    if vision:
        run_one, times = runner.run, runner.times
    else:
        clf_section = dict(raw["classifier"])
        explicit_encoder = clf_section.pop("encoder", None)
        clf = from_dict(ClassifierConfig, clf_section, "classifier.")
        plans = {n: strategy_plan(n, clf, [str(o) for o in _csv_list(extra.get(n))]) for n in names}
        lms = LMs(raw, root / "lm", quiet)
        times = lms.times

        def run_one(name, seed, size, run_dir):
            return _one_run(name, plans[name], seed, size, clf_section, lms, explicit_encoder, run_dir, quiet)
    # seed-major order: load changes on a shared machine hit every strategy alike
    todo = [(size, n, s) for size in sizes for s in seed_list for n in names]
    rank = {(size, n, s): k for k, (size, n, s) in enumerate((z, n, s) for z in sizes for n in names
                                                             for s in seed_list)}
    _log(f"compare: {len(names)} strategies x {len(seed_list)} seeds x {len(sizes)} sizes = {len(todo)} runs "
         f"-> {root}", quiet)
    if not vision:
        _warm_up()
    started, rows = time.time(), []
    for i, (size, name, seed) in enumerate(todo, 1):
        run_dir = root / "runs" / _run_name(name, seed, size)
        t0 = time.time()
        try:
            row = run_one(name, seed, size, run_dir)
        except UlmfitError as e:  # a shared phase (1 or 2) failed: every run that needs it fails
            row = _row(name, seed, size, run_dir, None, error=f"UlmfitError: {e}")
        rows.append(row)
        rows.sort(key=lambda r: rank[(_size(r["train_size"]), r["strategy"], r["seed"])])
        what = ("reused" if row["reused"] else f"{time.time() - t0:.1f} s") if row["status"] == "ok" \
            else f"FAILED: {row['error'][:200]}"
        acc = row["test_accuracy"] if row["test_accuracy"] is not None else row["valid_accuracy"]
        _log(f"[{i}/{len(todo)}] {_run_name(name, seed, size)}: "
             + (f"accuracy {acc:.4f} ({what})" if acc is not None else what), quiet)
        compare_plots.write_results(root, rows)  # after every run, so an interrupted compare leaves a valid table
    summary = compare_plots.write_summary(root, rows, times, time.time() - started)
    compare_plots.plot_all(root, rows)
    return summary
