"""``ulmfit compare``: every (labelled-set size, strategy, seed) of a recipe, side by side.

Text recipes run through ``compare.text`` (phase-3 strategies and LM ablations on shared LM
phases), vision recipes (``modality: image``) through ``compare.vision``. Writes results.csv,
summary.md and plots (``compare.plots``) after every run, so an interrupted compare leaves a
valid table; a finished run is read back, not re-run.
"""

from __future__ import annotations

import difflib
import time
from pathlib import Path

import yaml

from ulmfit.compare import plots as compare_plots
from ulmfit.compare.rows import csv_list, log, parse_seeds, parse_size, result_row, run_name
from ulmfit.compare.text import ABLATIONS, CORE, LMs, one_run, strategy_plan, warm_up
from ulmfit.core.checkpoint import atomic_write_text
from ulmfit.errors import UlmfitError
from ulmfit.phases.config import ClassifierConfig, apply_overrides, from_dict, load_yaml, merge_recipe_data
from ulmfit.phases.runs import check_out_dir


def _split_recipe(config_path: str, overrides: list[str] | None) -> tuple[dict, dict]:
    raw = load_yaml(config_path)
    if raw.get("modality") == "image":
        raw = apply_overrides(raw, list(overrides or []))
    else:
        raw = merge_recipe_data(raw, overrides)
        raw.pop("data", None)  # merged into the sections that read it
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
    raw, comp = _split_recipe(config_path, overrides)
    vision = raw.get("modality") == "image"
    if vision:
        try:
            from ulmfit.compare.vision import STRATEGIES as VISION, VisionRuns
        except ImportError as e:
            raise UlmfitError(f"comparing a vision recipe needs torchvision: pip install 'ulmfit[vision]' ({e})") \
                from None
    known = tuple(VISION) if vision else CORE + ABLATIONS
    names = csv_list(strategies) or csv_list(comp.get("strategies")) or ["gradual", "full"]
    names += [a for a in csv_list(ablations) if a not in names]
    names = list(dict.fromkeys(n.strip().lower().replace("-", "_") for n in names))
    extra = {} if vision else (comp.get("overrides") or {})
    unknown = [n for n in names if n not in known and n not in extra]
    if unknown:
        close = difflib.get_close_matches(unknown[0], known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        more = "" if vision else " or define it under compare.overrides in the recipe"
        raise UlmfitError(f"unknown strategy {unknown[0]!r}{hint}; choose from {', '.join(known)}{more}")
    seed_list = parse_seeds(seeds if seeds is not None else comp.get("seeds", 3))
    root = Path(out or comp.get("out") or Path(raw.get("out", "runs/compare")) / "compare")
    check_out_dir(root, "compare output folder")
    if vision:
        runner = VisionRuns(raw, root, quiet)
        default_sizes = runner.default_sizes()
    else:
        default_sizes = ["all"]
    sizes = [parse_size(s) for s in (csv_list(train_sizes) or csv_list(comp.get("train_sizes")) or default_sizes)]
    sizes = list(dict.fromkeys(sizes))
    atomic_write_text(root / "recipe.yaml", yaml.safe_dump(raw, sort_keys=False))
    if vision:
        run_one, times = runner.run, runner.times
    else:
        clf_section = dict(raw["classifier"])
        explicit_encoder = clf_section.pop("encoder", None)
        clf = from_dict(ClassifierConfig, clf_section, "classifier.")
        plans = {n: strategy_plan(n, clf, [str(o) for o in csv_list(extra.get(n))]) for n in names}
        lms = LMs(raw, root / "lm", quiet)
        times = lms.times

        def run_one(name, seed, size, run_dir):
            return one_run(name, plans[name], seed, size, clf_section, lms, explicit_encoder, run_dir, quiet)
    # seed-major order: load changes on a shared machine hit every strategy alike
    todo = [(size, n, s) for size in sizes for s in seed_list for n in names]
    rank = {(size, n, s): k for k, (size, n, s) in enumerate((z, n, s) for z in sizes for n in names
                                                             for s in seed_list)}
    log(f"compare: {len(names)} strategies x {len(seed_list)} seeds x {len(sizes)} sizes = {len(todo)} runs "
         f"-> {root}", quiet)
    if not vision:
        warm_up()
    started, rows = time.time(), []
    for i, (size, name, seed) in enumerate(todo, 1):
        run_dir = root / "runs" / run_name(name, seed, size)
        t0 = time.time()
        try:
            row = run_one(name, seed, size, run_dir)
        except UlmfitError as e:  # a shared phase (1 or 2) failed: every run that needs it fails
            row = result_row(name, seed, size, run_dir, None, error=f"UlmfitError: {e}")
        rows.append(row)
        rows.sort(key=lambda r: rank[(parse_size(r["train_size"]), r["strategy"], r["seed"])])
        what = ("reused" if row["reused"] else f"{time.time() - t0:.1f} s") if row["status"] == "ok" \
            else f"FAILED: {row['error'][:200]}"
        acc = row["test_accuracy"] if row["test_accuracy"] is not None else row["valid_accuracy"]
        log(f"[{i}/{len(todo)}] {run_name(name, seed, size)}: "
             + (f"accuracy {acc:.4f} ({what})" if acc is not None else what), quiet)
        compare_plots.write_results(root, rows)  # after every run, so an interrupted compare leaves a valid table
    summary = compare_plots.write_summary(root, rows, times, time.time() - started)
    compare_plots.plot_all(root, rows)
    return summary
