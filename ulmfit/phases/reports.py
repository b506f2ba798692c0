"""What every run leaves behind for a person: metrics.json, plots and a short report.md."""

from __future__ import annotations

import json
import math
import platform
import time
from pathlib import Path

import numpy as np

from ulmfit.core.checkpoint import atomic_write_text


def classification_metrics(preds: np.ndarray, targets: np.ndarray, classes: list[str], prefix: str) -> dict:
    """Accuracy, macro-F1, per-class precision/recall/F1 and the confusion matrix (scikit-learn)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

    labels = list(range(len(classes)))
    out = {f"{prefix}_accuracy": float(accuracy_score(targets, preds)),
           f"{prefix}_macro_f1": float(f1_score(targets, preds, labels=labels, average="macro", zero_division=0))}
    p, r, f, s = precision_recall_fscore_support(targets, preds, labels=labels, zero_division=0)
    for i, c in enumerate(classes):
        out[f"{prefix}_precision_{c}"] = float(p[i])
        out[f"{prefix}_recall_{c}"] = float(r[i])
        out[f"{prefix}_f1_{c}"] = float(f[i])
    out[f"{prefix}_confusion_matrix"] = confusion_matrix(targets, preds, labels=labels).tolist()
    return out


def classification_report_text(preds, targets, classes) -> str:
    from sklearn.metrics import classification_report

    return classification_report(targets, preds, labels=list(range(len(classes))), target_names=classes,
                                 digits=4, zero_division=0)


def plot_confusion(matrix, classes, path: Path, title: str = "confusion matrix") -> None:
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    m = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(classes), 1 + 0.6 * len(classes)))
    ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, str(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black", fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_history(history: list[dict], path: Path) -> None:
    """Training and validation loss (and accuracy where there is one) per epoch."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not history:
        return
    ep = [r["epoch"] for r in history]
    acc_key = next((k for k in ("valid_accuracy",) if k in history[0]), None)
    fig, axes = plt.subplots(1, 2 if acc_key else 1, figsize=(10 if acc_key else 5, 3.5))
    axes = np.atleast_1d(axes)
    axes[0].plot(ep, [r.get("train_loss", math.nan) for r in history], "o-", label="train loss")
    if "valid_loss" in history[0]:
        axes[0].plot(ep, [r.get("valid_loss", math.nan) for r in history], "o-", label="valid loss")
    axes[0].set_xlabel("epoch")
    axes[0].legend()
    if acc_key:
        axes[1].plot(ep, [r.get(acc_key, math.nan) for r in history], "o-", color="C2")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("valid accuracy")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def write_metrics(out: Path, metrics: dict) -> None:
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=1, default=float))


def write_report(out: Path, title: str, what: str, started: float, metrics: dict, history: list[dict],
                 files: list[str]) -> None:
    """A short human-readable summary of what ran, how long it took and the results."""
    took = time.time() - started
    lines = [f"# {title}", "", what, "",
             f"- finished: {time.strftime('%Y-%m-%d %H:%M:%S')}",
             f"- wall time: {took:.1f} s",
             f"- machine: {platform.machine()}, {platform.processor() or platform.platform()}",
             "", "## Results", "", "| metric | value |", "|---|---|"]
    for k, v in metrics.items():
        if isinstance(v, (int, float)) and not k.startswith(("test_precision_", "test_recall_", "test_f1_")):
            lines.append(f"| {k} | {v:.4f} |" if isinstance(v, float) else f"| {k} | {v} |")
    if history:
        lines += ["", "## Per epoch", "", "| epoch | stage | train loss | valid loss | valid metric | seconds |",
                  "|---|---|---|---|---|---|"]
        for r in history:
            metric = next((r[k] for k in ("valid_accuracy", "valid_perplexity") if k in r), float("nan"))
            lines.append(f"| {r['epoch']} | {r.get('stage_name', '')} | {r.get('train_loss', float('nan')):.4f} | "
                         f"{r.get('valid_loss', float('nan')):.4f} | {metric:.4f} | {r.get('epoch_s', 0):.1f} |")
    lines += ["", "## Files", ""] + [f"- `{f}`" for f in files] + [""]
    atomic_write_text(out / "report.md", "\n".join(lines))
