"""``ulmfit run``: every phase of a recipe in order (finished phases skipped), and the
forward + backward ensemble (the recipe's backward twin, then both classifiers averaged)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from ulmfit.errors import UlmfitError
from ulmfit.phases import reports
from ulmfit.phases.backends import backend, finetune_lm, pretrain, train_classifier
from ulmfit.phases.common import log
from ulmfit.phases.config import RecipeConfig, save_yaml
from ulmfit.phases.ensemble import make_ensemble
from ulmfit.phases.runs import check_out_dir, interrupted_checkpoint


def backward_recipe(cfg: RecipeConfig) -> RecipeConfig:
    """The recipe's backward twin: every phase with ``model.backwards``, under ``<out>/backward/``,
    each phase starting from the backward phase before it."""
    tw = copy.deepcopy(cfg)
    root = Path(cfg.out) / "backward"
    tw.out, tw.ensemble = str(root), False
    for name in ("pretrain", "finetune_lm", "classifier"):
        section = getattr(tw, name)
        if section is not None:
            section.model.backwards = True
            section.out = str(root / name)
    if tw.finetune_lm:
        if tw.pretrain:
            tw.finetune_lm.pretrained = tw.pretrain.out
        elif cfg.backward_pretrained:
            tw.finetune_lm.pretrained = cfg.backward_pretrained
        elif tw.finetune_lm.pretrained:
            raise UlmfitError(f"ensemble: the recipe fine-tunes {tw.finetune_lm.pretrained} without a pretrain "
                              "section; set backward_pretrained to a backward LM (pretrain with model.backwards=true)")
    if tw.classifier and tw.classifier.encoder:
        if not tw.finetune_lm:
            raise UlmfitError("ensemble: the classifier starts from an external encoder; give the recipe a "
                              "finetune_lm section so the backward classifier has a backward encoder")
        tw.classifier.encoder = tw.finetune_lm.out
    return tw


def _run_ensemble(cfg: RecipeConfig, force: bool, quiet: bool, resume: bool) -> dict[str, dict]:
    """Train the backward twin, then evaluate forward+backward averaged on the test file."""
    if not cfg.classifier or not backend(cfg.classifier.model.type).ensembles:
        raise UlmfitError("ensemble: needs an AWD-LSTM classifier section (forward + backward classifiers)")
    twin = backward_recipe(cfg)
    log(f"== ensemble: backward phases -> {twin.out}", quiet)
    back = run_recipe(twin, force=force, quiet=quiet, resume=resume)
    d = cfg.classifier.data
    res = {"backward": back}
    ens = make_ensemble(Path(cfg.out) / "ensemble", [cfg.classifier.out, twin.classifier.out], force=True,
                        test=d.test, text_cols=d.text_cols, label_col=d.label_col)
    if d.test:
        res["ensemble"] = {k: v for k, v in ens.items() if k not in ("ensemble", "members")}
        log(f"ensemble (forward+backward): test accuracy {ens['test_accuracy']:.4f}", quiet)
    return res


def run_recipe(cfg: RecipeConfig, force: bool = False, quiet: bool = False, resume: bool = False) -> dict:
    """Run the recipe's phases in order; a phase whose metrics.json exists is skipped unless force.
    With ``resume``, a phase that was interrupted continues from its last checkpoint."""
    started = time.time()
    results: dict[str, dict] = {}
    plan = [("pretrain", cfg.pretrain, pretrain), ("finetune_lm", cfg.finetune_lm, finetune_lm),
            ("classifier", cfg.classifier, train_classifier)]
    if not any(c for _, c, _ in plan):
        raise UlmfitError("the recipe has no pretrain, finetune_lm or classifier section")
    for _, phase_cfg, _ in plan:
        if phase_cfg is not None:
            check_out_dir(phase_cfg.out, create=False)
    for name, phase_cfg, fn in plan:
        if phase_cfg is None:
            continue
        done = Path(phase_cfg.out) / "metrics.json"
        if done.exists() and not force:
            log(f"{name}: output exists in {phase_cfg.out}, skipping (use --force to re-run)", quiet)
            results[name] = json.loads(done.read_text(encoding="utf-8"))
            continue
        last = interrupted_checkpoint(phase_cfg.out) if resume else None
        if last and not backend(phase_cfg.model.type).can_resume(name, phase_cfg):
            log(f"{name}: a {phase_cfg.model.type} {name} cannot resume; starting it over", quiet)
            last = None
        log(f"== {name} -> {phase_cfg.out}" + (f" (resuming from {last.name})" if last else ""), quiet)
        results[name] = fn(phase_cfg, quiet=quiet, force=force, resume=last is not None)
    if cfg.ensemble:
        results.update(_run_ensemble(cfg, force, quiet, resume))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    summary = {f"{p}.{k}": v for p, m in results.items() for k, v in m.items()
               if isinstance(v, (int, float)) and not k.startswith(("test_precision", "test_recall", "test_f1_",
                                                                      "valid_precision", "valid_recall", "valid_f1_"))}
    reports.write_metrics(out, summary)
    reports.write_report(out, "ulmfit run", f"Ran {', '.join(results)} from the recipe.", started, summary, [],
                         [f"{p}/" for p in results] + ["config.yaml", "metrics.json"])
    return summary
