"""What `ulmfit compare` writes from its rows: results.csv, summary.md (mean ± std per strategy and
size, ranked) and the plots: accuracy per strategy with the seed spread, validation accuracy
against wall time per epoch, and (low-shot) accuracy against the number of labelled examples."""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

from ulmfit.core.checkpoint import atomic_write_text
from ulmfit.compare.paired import mean_std, paired, paired_lines

COLUMNS = ["strategy", "seed", "train_size", "n_train", "epochs", "wall_s", "valid_accuracy", "valid_macro_f1",
           "test_accuracy", "test_macro_f1", "best_epoch", "best_valid_accuracy", "status", "error", "reused",
           "run_dir"]


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _order(size) -> float:
    return math.inf if size == "all" else int(str(size).lower().removesuffix("pc"))


def _metric(rows: list[dict]) -> str:
    return "test_accuracy" if any(r["test_accuracy"] is not None for r in rows) else "valid_accuracy"


def _ok(rows, metric):
    return [r for r in rows if r["status"] == "ok" and r[metric] is not None]


def plot_accuracy(root: Path, rows: list[dict]) -> None:
    """One panel per train size: each seed as a dot, the mean as a bar with a ±std error bar."""
    plt = _plt()
    metric = _metric(rows)
    sizes = sorted(dict.fromkeys(r["train_size"] for r in rows), key=_order)
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    fig, axes = plt.subplots(1, len(sizes), figsize=(max(4.5, 1.1 * len(names) + 1.5) * len(sizes), 4), squeeze=False)
    for ax, size in zip(axes[0], sizes):
        for i, name in enumerate(names):
            vals = [r[metric] for r in _ok(rows, metric) if r["strategy"] == name and r["train_size"] == size]
            if not vals:
                ax.text(i, 0.02, "failed", ha="center", rotation=90, color="red", fontsize=8)
                continue
            m, sd = mean_std(vals)
            ax.bar(i, m, color=f"C{i % 10}", alpha=0.35, width=0.7)
            ax.errorbar(i, m, yerr=sd, color="black", capsize=4, lw=1)
            ax.scatter([i + (j - (len(vals) - 1) / 2) * 0.08 for j in range(len(vals))], vals, color=f"C{i % 10}",
                       edgecolor="black", s=18, zorder=3)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
        ax.set_ylabel(metric.replace("_", " "))
        ax.set_title(f"train size: {size}")
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(root / "accuracy.png", dpi=100)
    plt.close(fig)


def _history(run_dir: str) -> list[dict]:
    p = Path(run_dir) / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()]


def plot_valid_vs_time(root: Path, rows: list[dict]) -> None:
    """Validation accuracy after each epoch against the run's elapsed training seconds, every seed
    of every strategy (one colour a strategy), at the largest train size."""
    plt = _plt()
    sizes = sorted(dict.fromkeys(r["train_size"] for r in rows), key=_order)
    size = sizes[-1] if sizes else "all"
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(names):
        labelled = False
        for r in rows:
            if r["strategy"] != name or r["train_size"] != size or r["status"] != "ok":
                continue
            h = [x for x in _history(r["run_dir"]) if x.get("valid_accuracy") is not None]
            if not h:
                continue
            ax.plot([x["elapsed_s"] for x in h], [x["valid_accuracy"] for x in h], "o-", color=f"C{i % 10}",
                    alpha=0.7, ms=3, lw=1, label=None if labelled else name)
            labelled = True
    ax.set_xlabel("wall time (s, training + validation)")
    ax.set_ylabel("validation accuracy")
    ax.set_title(f"validation accuracy per epoch (train size: {size})")
    _save(plt, fig, ax, root / "valid_vs_time.png")


def _save(plt, fig, ax, path: Path) -> None:
    """Grid, a legend when there is something to label, and the PNG."""
    ax.grid(alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_lowshot(root: Path, rows: list[dict]) -> None:
    """Mean accuracy (±std over seeds) against the number of labelled training texts, per strategy."""
    plt = _plt()
    metric = _metric(rows)
    names = list(dict.fromkeys(r["strategy"] for r in rows))
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, name in enumerate(names):
        pts = {}
        for r in _ok(rows, metric):
            if r["strategy"] == name and r["n_train"] not in (None, ""):
                pts.setdefault(int(r["n_train"]), []).append(r[metric])
        if not pts:
            continue
        xs = sorted(pts)
        ms, sds = zip(*(mean_std(pts[x]) for x in xs))
        ax.errorbar(xs, ms, yerr=sds, fmt="o-", color=f"C{i % 10}", capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training texts")
    ax.set_ylabel(metric.replace("_", " "))
    _save(plt, fig, ax, root / "lowshot.png")


def plot_all(root: Path, rows: list[dict]) -> None:
    if not rows:
        return
    plot_accuracy(root, rows)
    plot_valid_vs_time(root, rows)
    if len({r["train_size"] for r in rows}) > 1:
        plot_lowshot(root, rows)


# ---- tables ---------------------------------------------------------------------------------

def write_results(root: Path, rows: list[dict]) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=COLUMNS)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in COLUMNS})
    atomic_write_text(root / "results.csv", buf.getvalue())


def aggregate(rows: list[dict]) -> list[dict]:
    """Mean and std per (train size, strategy) of the successful runs, best first within a size."""
    metric = "test_accuracy" if any(r["test_accuracy"] is not None for r in rows) else "valid_accuracy"
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["train_size"], r["strategy"]), []).append(r)
    out = []
    for (size, name), rs in groups.items():
        ok = [r for r in rs if r["status"] == "ok" and r[metric] is not None]
        m, sd = mean_std([r[metric] for r in ok])
        vm, _ = mean_std([r["valid_accuracy"] for r in ok if r["valid_accuracy"] is not None])
        wm, _ = mean_std([r["wall_s"] for r in ok if r["wall_s"] is not None])
        out.append({"train_size": size, "strategy": name, "metric": metric, "mean": m, "std": sd,
                    "valid_mean": vm, "wall_s_mean": wm, "n_ok": len(ok), "n_failed": len(rs) - len(ok),
                    "n_train": next((r["n_train"] for r in ok if r["n_train"] is not None), None),
                    "epochs": next((r["epochs"] for r in ok if r["epochs"] is not None), None)})
    out.sort(key=lambda a: (_order(a["train_size"]), -(a["mean"] if a["mean"] == a["mean"] else -1)))
    return out


def write_summary(root: Path, rows: list[dict], lm_times: dict, wall: float) -> dict:
    agg = aggregate(rows)
    metric = agg[0]["metric"] if agg else "test_accuracy"
    f = lambda v: "-" if v is None or v != v else f"{v:.4f}"  # noqa: E731
    paired_all: list[dict] = []
    lines = ["# ulmfit compare", "", f"{len(rows)} runs ({sum(r['status'] == 'failed' for r in rows)} failed), "
             f"ranked by mean {metric} (± sample std over seeds) within each labelled-set size.", ""]
    for size in dict.fromkeys(a["train_size"] for a in agg):
        part = [a for a in agg if a["train_size"] == size]
        lines += [f"## train size: {size}" + (f" ({part[0]['n_train']} labelled examples)" if part[0]["n_train"] else ""),
                  "", f"| rank | strategy | {metric} | valid accuracy | epochs | wall s / run | runs ok | failed |",
                  "|---|---|---|---|---|---|---|---|"]
        for k, a in enumerate(part, 1):
            lines.append(f"| {k} | {a['strategy']} | {f(a['mean'])} ± {f(a['std'])} | {f(a['valid_mean'])} | "
                         f"{a['epochs'] or '-'} | {a['wall_s_mean']:.1f} | {a['n_ok']} | {a['n_failed']} |"
                         if a["wall_s_mean"] == a["wall_s_mean"] else
                         f"| {k} | {a['strategy']} | - | - | - | - | 0 | {a['n_failed']} |")
        lines.append("")
        pairs = paired_rows(rows, size, metric)
        if pairs:
            ref = pairs[0]["ref"]
            lines += [f"Paired on the same seeds against `{ref}` (the first strategy; b - a with a = {ref}):", ""]
            lines += paired_lines(ref, [(r["strategy"], r) for r in pairs]) + [""]
            paired_all += pairs
    sizes = list(dict.fromkeys(a["train_size"] for a in agg))
    if len(sizes) > 1:
        lines += ["## Low-shot: " + metric + " by labelled examples", "",
                  "| strategy | " + " | ".join(str(s) for s in sizes) + " |", "|---" * (len(sizes) + 1) + "|"]
        for name in dict.fromkeys(a["strategy"] for a in agg):
            cells = []
            for s in sizes:
                a = next((a for a in agg if a["strategy"] == name and a["train_size"] == s), None)
                cells.append(f"{f(a['mean'])} ± {f(a['std'])}" if a else "-")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        lines.append("")
    if lm_times:
        lines += ["## Shared phases (pretraining, LM fine-tuning: run once, not counted in the per-run times)", ""]
        lines += [f"- {k}: {v:.1f} s" for k, v in lm_times.items()] + [""]
    failed = [r for r in rows if r["status"] == "failed"]
    if failed:
        lines += ["## Failed runs", ""] + [f"- `{Path(r['run_dir']).name}`: {r['error']}" for r in failed] + [""]
    lines += [f"Total wall time of this compare: {wall:.1f} s. Per-run rows: `results.csv`; plots: "
              "`accuracy.png`, `valid_vs_time.png`" + (", `lowshot.png`." if len(sizes) > 1 else "."), ""]
    atomic_write_text(root / "summary.md", "\n".join(lines))
    return {"out": str(root), "runs": len(rows), "failed": len(failed), "metric": metric,
            "ranking": [{k: a[k] for k in ("train_size", "strategy", "mean", "std", "wall_s_mean", "n_ok")}
                        for a in agg],
            "paired": [{k: r[k] for k in ("train_size", "ref", "strategy", "n", "mean_diff", "wins", "losses",
                                          "diff_p", "spread_p")} for r in paired_all]}


def paired_rows(rows: list[dict], size, metric: str) -> list[dict]:
    """Each strategy of a train size against the first one, on the seeds both finished."""
    by: dict[str, dict] = {}
    for r in rows:
        if r["train_size"] == size and r["status"] == "ok" and r[metric] is not None:
            by.setdefault(r["strategy"], {})[r["seed"]] = r[metric]
    names = list(by)
    out = []
    for name in names[1:]:
        res = paired(by[names[0]], by[name])
        if res["n"] >= 2:
            out.append({"train_size": size, "ref": names[0], "strategy": name, **res})
    return out
