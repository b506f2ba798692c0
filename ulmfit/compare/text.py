"""`ulmfit compare` on a text recipe: fine-tuning strategies and ablations, seeds and low-shot sizes, side by side.

Every run is phase 3 (and, for the LM ablations, a phase-2 variant) with one strategy, one seed
and one labelled-set size; everything else comes from the same recipe. Phase 1 runs at most once
per compare (or not at all when the recipe names a `pretrained` LM), each phase-2 variant runs
once and is shared by every strategy, seed and size that uses it.

    out/
      recipe.yaml                  the recipe after --set overrides (without its `compare` section)
      lm/pretrain, lm/finetune...  the shared phase 1 / phase 2 outputs
      runs/<strategy>-s<seed>-n<size>/   one train-classifier output per run
      results.csv  summary.md  accuracy.png  valid_vs_time.png  [lowshot.png]

A vision recipe (`modality: image`) compares the same way through ulmfit.compare.vision: its
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
from pathlib import Path

from ulmfit.core.checkpoint import save_weights
from ulmfit.errors import UlmfitError
from ulmfit.compare.rows import guarded_run, log
from ulmfit.phases.backends import backend, finetune_lm, load_language_model, pretrain, train_classifier
from ulmfit.phases.config import ClassifierConfig, FinetuneLMConfig, PretrainConfig, apply_overrides, from_dict
from ulmfit.phases.runs import read_run, write_manifest

CORE = ("gradual", "full", "chain_thaw", "head_only")
ABLATIONS = ("no_pretraining", "no_lm_finetuning", "lm_no_discriminative", "lm_no_stlr", "one_cycle", "stlr")
LM_ABLATION = {"lm_no_discriminative": {"train": {"lr_factor": None}},
               "lm_no_stlr": {"train": {"schedule": "one_cycle"}}}


# ---- strategies -> config changes --------------------------------------------------------------

def merge(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` merged in, nested mappings key by key (neither is modified)."""
    out = copy.deepcopy(base)
    for k, v in changes.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _num(x: float):
    return int(x) if float(x).is_integer() else x


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
    """Layer groups of the recipe's classifier (the backend table knows); None if unknown."""
    count = backend(clf.model.type).layer_groups
    return count(clf, encoder) if count else None


def _split_extra(name: str, extra: list[str]) -> tuple[list[str], list[str]]:
    """A strategy's `compare.overrides` (--set style) as (phase-2, phase-3) overrides, prefixes removed."""
    ft, cl = [], []
    for o in extra:
        key = o.split("=", 1)[0].strip()
        if key.startswith(("finetune_lm.", "classifier.")):
            (ft if key.startswith("finetune_lm.") else cl).append(o.split(".", 1)[1])
        else:
            raise UlmfitError(f"compare override {o!r} for strategy {name!r} must start with "
                              "classifier. or finetune_lm.")
    return ft, cl


def strategy_plan(name: str, clf: ClassifierConfig, extra: list[str]) -> dict:
    """What one strategy changes: `lm` (finetuned | pretrained | none), the changes to the phase-2
    and classifier sections (nested mappings), and the recipe's own overrides for it."""
    total, head, whole = _budget(clf)
    lm, ft, cl = "finetuned", {}, {}
    if name == "gradual" or name not in CORE + ABLATIONS:
        if clf.train.strategy != "gradual":
            cl = {"train": {"strategy": "gradual"}}
    elif name == "full":
        cl = {"train": {"strategy": "full", "epochs": _num(total), "lr": whole}}
    elif name == "head_only":
        cl = {"train": {"strategy": "head_only", "epochs": _num(total), "lr": head}}
    elif name == "chain_thaw":
        cl = {"train": {"strategy": "chain_thaw"}}  # epochs / lr filled in once the encoder is known
    elif name == "no_pretraining":
        lm = "none"
    elif name == "no_lm_finetuning":
        lm = "pretrained"
    elif name in LM_ABLATION:
        ft = copy.deepcopy(LM_ABLATION[name])
    elif name in ("one_cycle", "stlr"):
        cl = {"train": {"schedule": name}}
    ft_sets, cl_sets = _split_extra(name, extra)
    return {"lm": lm, "finetune": ft, "classifier": cl, "finetune_sets": ft_sets, "classifier_sets": cl_sets,
            "chain_thaw": name == "chain_thaw", "budget": (total, head, whole)}


def _chain_thaw_changes(plan: dict, clf: ClassifierConfig, encoder: str | None) -> dict:
    """Chain-thaw (head, each group alone bottom-up, then all) in the same epoch budget; the head
    stage gets the head LR, each lone group exactly the all-groups LR (its stage LR is raised by
    the discriminative factor the core divides it by), the last stage the all-groups LR."""
    n = _n_groups(clf, encoder)
    total, head, whole = plan["budget"]
    if n is None or not isinstance(whole, (int, float)) or not isinstance(head, (int, float)):
        return {"train": {"epochs": _num(total)}}
    f = clf.train.lr_factor or 1.0
    lrs = [head] + [float(f"{whole * f ** (n - 1 - i):.6g}") for i in range(n - 1)] + [whole]
    return {"train": {"epochs": _num(round(total / (n + 1), 4)), "lr": lrs}}


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
            log(f"compare: {tag}: reusing {out}", self.quiet)
            self.times[tag] = json.loads((out / "metrics.json").read_text()).get("wall_s", 0.0)
            return str(out)
        shutil.rmtree(out, ignore_errors=True)
        log(f"compare: {tag} -> {out}", self.quiet)
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

    def architecture(self) -> dict:
        """The classifier `model` keys that give a random encoder (no_pretraining) the same
        architecture as the pretrained LM, read from the recipe without running anything."""
        keys = ("emb_size", "n_hid", "n_layers")
        ft = self.raw.get("finetune_lm") or {}
        src = Path(str(ft.get("pretrained") or "")) / "lm_config.json"
        if ft.get("pretrained") and src.exists():
            d = json.loads(src.read_text(encoding="utf-8"))
            return {k: d[k] for k in keys if d.get(k)}
        m = (self.raw.get("pretrain") or {}).get("model") or {}
        return {k: m[k] for k in ("arch",) + keys if m.get(k) is not None}

    def _checkpoint(self) -> str | None:
        """A transformers recipe's checkpoint (its pretrained model), else None."""
        for section in ("finetune_lm", "classifier"):
            m = (self.raw.get(section) or {}).get("model") or {}
            if m.get("type") == "transformers" and m.get("name_or_path"):
                return str(m["name_or_path"])
        return None

    def _get_pretrained(self) -> str:
        ft = self.raw.get("finetune_lm") or {}
        if ft.get("pretrained"):
            return str(ft["pretrained"])
        if checkpoint := self._checkpoint():
            return checkpoint
        if not self.raw.get("pretrain"):
            raise UlmfitError("this comparison needs a pretrained LM: give the recipe a `pretrain` section or "
                              "set finetune_lm.pretrained to an LM folder")
        cfg = from_dict(PretrainConfig, {**self.raw["pretrain"], "out": str(self.root / "pretrain")}, "pretrain.")
        return self._phase("pretrain", pretrain, cfg, "pretrain")

    def pretrained_encoder(self) -> str:
        """The pretrained LM as a phase-3 encoder folder (phase 3 reads encoder.safetensors)."""
        src = Path(self.pretrained())
        if (src / "encoder.safetensors").exists() or self._checkpoint():
            return str(src)  # a transformers checkpoint is its own encoder
        dst = self.root / "pretrained-encoder"
        if not (dst / "encoder.safetensors").exists():
            info = read_run(src)
            if info.kind != "lm" or info.backend != "awd_lstm" or info.exported:
                raise UlmfitError(f"no_lm_finetuning needs an AWD-LSTM LM run folder of ours, got {src}")
            dst.mkdir(parents=True, exist_ok=True)
            for f in [src / "lm_config.json", *src.glob("tokenizer*")]:
                shutil.copy2(f, dst / f.name)
            save_weights(load_language_model(src)[0].encoder, dst / "encoder.safetensors")
            write_manifest(dst, "lm", "awd_lstm", "pretrain", parent=str(src))
        return str(dst)

    def finetuned(self, changes: dict, sets: list[str], label: str) -> str:
        """The phase-2 variant with ``changes`` (a nested mapping) and ``sets`` (--set style)."""
        key = (json.dumps(changes, sort_keys=True),) + tuple(sorted(sets)) if changes or sets else ()
        if key in self.variants:
            return self.variants[key]
        if not self.raw.get("finetune_lm"):
            raise UlmfitError(f"strategy {label!r} needs phase 2: give the recipe a `finetune_lm` section "
                              "(or set classifier.encoder to a fine-tuned LM)")
        section = apply_overrides(merge(self.raw["finetune_lm"], changes), list(sets))
        section["pretrained"] = self.pretrained()
        tag = "finetune" if not key else f"finetune-{label}"
        section["out"] = str(self.root / tag)
        self.variants[key] = self._phase("finetune_lm", finetune_lm,
                                         from_dict(FinetuneLMConfig, section, "finetune_lm."), tag)
        return self.variants[key]


def _encoder_for(plan: dict, strategy: str, lms: LMs, explicit_encoder) -> tuple[str | None, dict]:
    """(the run's encoder folder or None, model keys for a random encoder) of one strategy."""
    if plan["lm"] == "none":
        return None, lms.architecture()
    if plan["lm"] == "pretrained":
        return lms.pretrained_encoder(), {}
    if explicit_encoder is not None and not plan["finetune"] and not plan["finetune_sets"]:
        return explicit_encoder, {}
    return lms.finetuned(plan["finetune"], plan["finetune_sets"], strategy), {}


def one_run(strategy, plan, seed, size, clf_section: dict, lms: LMs, explicit_encoder, run_dir: Path,
            quiet: bool) -> dict:
    def train():
        sets = plan["classifier_sets"]
        section = merge(clf_section, plan["classifier"])
        if not any(o.split("=", 1)[0].strip() == "encoder" for o in sets):
            encoder, arch = _encoder_for(plan, strategy, lms, explicit_encoder)
            section = merge(section, {"model": {k: v for k, v in arch.items()
                                                if k not in (clf_section.get("model") or {})}})
            section["encoder"] = encoder
        section = apply_overrides(section, sets)
        if plan["chain_thaw"]:
            base = from_dict(ClassifierConfig, section, "classifier.")
            section = apply_overrides(merge(section, _chain_thaw_changes(plan, base, base.encoder)), sets)
        section = merge(section, {"train": {"seed": seed}, "data": {"train_size": size}, "out": str(run_dir)})
        return train_classifier(from_dict(ClassifierConfig, section, "classifier."), quiet=True)

    return guarded_run(strategy, seed, size, run_dir, train)


def warm_up() -> None:
    """Import what phase 3 imports lazily, so the first run's wall time is not inflated by it."""
    import importlib

    for m in ("sklearn.metrics", "matplotlib.pyplot", "datasets", "accelerate", "ulmfit.text.data.readers",
              "ulmfit.text.data.class_data", "ulmfit.text.awd_lstm.text_classifier", "ulmfit.text.awd_lstm.lm_train"):
        try:
            importlib.import_module(m)
        except ImportError:
            pass
