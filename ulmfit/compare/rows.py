"""One compare run's results row, the guard that records a failed run and goes on, and the
parsing of strategies, seeds and sizes shared by text and vision comparisons."""

from __future__ import annotations

import json
import shutil
import sys
import traceback
from pathlib import Path

from ulmfit.errors import UlmfitError
from ulmfit.phases.sampling import parse_train_size


def log(msg: str, quiet: bool) -> None:
    if not quiet:
        print(msg, file=sys.stderr, flush=True)


def csv_list(value) -> list:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return list(value) if isinstance(value, (list, tuple)) else [value]


def parse_size(v) -> int | str | None:
    """A train size: a positive int (N in all), 'Npc' (N per class), or None for `all`."""
    if v is None or str(v).strip().lower() in ("all", "none", "full", "0"):
        return None
    n, per_class = parse_train_size(v)
    return f"{n}pc" if per_class else n


def parse_seeds(v) -> list[int]:
    """`3` means seeds 0, 1, 2; a list (or "1,7,42") names them."""
    items = csv_list(v)
    try:
        if len(items) == 1 and not isinstance(v, (list, tuple)):
            n = int(items[0])
            if n < 1:
                raise ValueError
            return list(range(n))
        return [int(s) for s in items]
    except ValueError:
        raise UlmfitError(f"--seeds must be a count (e.g. 3) or a list of integers, got {v!r}") from None


def run_name(strategy: str, seed: int, size: int | None) -> str:
    return f"{strategy}-s{seed}-n{size if size else 'all'}"


def _history(run_dir: Path) -> list[dict]:
    p = run_dir / "metrics.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


def result_row(strategy, seed, size, run_dir: Path, metrics: dict | None, error: str = "", reused=False) -> dict:
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
        return result_row(strategy, seed, size, run_dir, json.loads((run_dir / "metrics.json").read_text()), reused=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    try:
        return result_row(strategy, seed, size, run_dir, dict(train()))
    except KeyboardInterrupt:
        raise
    except Exception as e:  # noqa: BLE001 - a crashed run is recorded and the others go on
        msg = f"{type(e).__name__}: {e}".replace("\n", " ")[:500]
        (run_dir / "error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        return result_row(strategy, seed, size, run_dir, None, error=msg)
