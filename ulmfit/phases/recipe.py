"""``ulmfit run``: every phase of a recipe in order (finished phases skipped), and the
forward + backward ensemble (the recipe's backward twin, then both classifiers averaged), and
``ulmfit ensemble`` (any classifiers over the same classes, averaged)."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

from ulmfit.core.predictions import ENSEMBLE_NAME, EnsembleClassifier
from ulmfit.errors import UlmfitError
from ulmfit.phases import reports
from ulmfit.phases.backends import backend, finetune_lm, load_classifier, pretrain, train_classifier
from ulmfit.phases.common import log
from ulmfit.phases.config import RecipeConfig, save_yaml
from ulmfit.phases.runs import check_out_dir, interrupted_checkpoint, read_run, write_manifest
from ulmfit.phases.use import evaluate


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


def make_ensemble(out: str | Path, members: list[str | Path], force: bool = False, test: str | None = None,
                  text_cols=None, label_col=None, verify: bool = True) -> dict:
    """Average classifiers over the same classes (``ulmfit ensemble``): ``out`` gets ensemble.json
    listing the member folders and a manifest; ``predict`` and ``evaluate`` read it as one classifier.
    With ``test`` (a labelled file) the ensemble is evaluated there and its metrics are written to ``out``."""
    if len(members) < 2:
        raise UlmfitError(f"an ensemble needs at least two classifier folders, got {len(members)}")
    infos = [read_run(m) for m in members]
    for info in infos:
        if info.kind != "classifier":
            raise UlmfitError(f"{info.path} is a {'language model' if info.kind == 'lm' else info.kind}, "
                              "not a classifier: ensemble members are classifier folders")
    if len({i.path.resolve() for i in infos}) < len(infos):
        raise UlmfitError("the same classifier folder is listed twice")
    backends = sorted({i.backend for i in infos})
    if len(backends) > 1:
        raise UlmfitError(f"ensemble members must share one backend, got {', '.join(backends)}")
    o = Path(out)
    if o.is_dir() and any(o.iterdir()):
        if not (o / ENSEMBLE_NAME).is_file():
            raise UlmfitError(f"{o} exists and is not an ensemble folder: choose an empty or new folder")
        if not force:
            raise UlmfitError(f"{o} already holds an ensemble: pass --force to replace it")
    EnsembleClassifier([load_classifier(i.path, verify=verify) for i in infos])  # the classes must agree
    check_out_dir(o)
    for stale in ("metrics.json", "classification_report.txt", "confusion_matrix.png"):  # a replaced ensemble's
        (o / stale).unlink(missing_ok=True)
    EnsembleClassifier.save(o, [i.path for i in infos])
    write_manifest(o, kind="ensemble", backend=backends[0], phase="ensemble", parent=str(infos[0].path),
                   tokenizer=None)
    res = {"ensemble": str(o), "members": [str(i.path) for i in infos]}
    if test:
        res.update(evaluate(str(o), test, text_cols, label_col, out=str(o), verify=verify))
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
