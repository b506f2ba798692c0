"""A training step alone and beside a busy process: what sharing the CPU costs (issue 24, item 12).

    python scripts/bench_contention.py [--steps 12] [--warmup 4] [--competitors 1]

Each measurement runs in its own child process: the real ``Trainer`` (core/trainer.py) trains a
`small` AWD-LSTM LM (batch 64 x 72, the first 100 WikiText-2 articles) for warm-up + measured steps
and prints the median step time. Modes:

  fixed  ``OMP_NUM_THREADS`` = the available cores: torch's threads stay put (what every run did
         before the thread governor; also what a user gets by pinning the count)
  auto   the default: ``core.threads.ThreadGovernor`` lowers the count while other processes
         keep cores busy and raises it again when they stop

each alone and with ``--competitors`` busy processes (``while True: pass``) started first. Prints
one JSON object per measurement, then a summary with each mode's slowdown (busy / alone median).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ULMFIT_DATA", ROOT.parent / "shared" / "data")) / "wikitext-2" / "train.txt"


def child(steps: int, warmup: int) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from ulmfit.core.train_config import TrainConfig
    from ulmfit.core.strategies import Stage
    from ulmfit.text.awd_lstm.lm_train import lm_trainer
    from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel
    from ulmfit.text.data.lm_data import LMStream
    from ulmfit.text.data.readers import split_wikitext_articles
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    arts = split_wikitext_articles(DATA.read_text(encoding="utf-8"))[:100]
    tok = TextTokenizer.train(arts, min_freq=3)
    ids, lens = tok.encode_flat(arts)
    offs = [0, *map(int, __import__("numpy").cumsum(lens))]
    stream = LMStream(ids, offs, bs=64, bptt=72, shuffle=False, variable_bptt=False)
    torch.manual_seed(0)
    model = AWDLSTMLanguageModel(AWDLSTMConfig.preset("small", len(tok)))
    cfg = TrainConfig(progress=False, checkpoint=False, max_steps_per_epoch=warmup + steps)
    tr = lm_trainer(model, stream, None, cfg, None, alpha=2.0, beta=1.0, bptt=72)
    times, threads = [], []
    step = tr.train_step

    def timed(*a, **k):
        t = time.perf_counter()
        out = step(*a, **k)
        times.append(time.perf_counter() - t)
        threads.append(torch.get_num_threads())
        return out

    tr.train_step = timed
    tr.fit([Stage(epochs=1, lr=1e-3, schedule="constant")])
    kept = times[warmup:]
    return {"median_step_s": round(statistics.median(kept), 3), "min_step_s": round(min(kept), 3),
            "max_step_s": round(max(kept), 3), "steps": len(kept), "threads_per_step": threads,
            "governor_changes": tr.thread_governor.changes}


def measure(mode: str, competitors: int, steps: int, warmup: int) -> dict:
    from ulmfit.core.threads import available_cores  # noqa: F401 (import check before forking)

    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if mode == "fixed":
        env["OMP_NUM_THREADS"] = str(available_cores())
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(competitors)]
    try:
        time.sleep(0.5 if competitors else 0)
        r = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps), "--warmup", str(warmup)],
                           capture_output=True, text=True, env=env)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    if r.returncode != 0:
        return {"mode": mode, "competitors": competitors, "error": r.stderr.strip().splitlines()[-3:]}
    return {"mode": mode, "competitors": competitors, **json.loads(r.stdout.strip().splitlines()[-1])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=4, help="steps not timed (the governor measures over 2 s)")
    ap.add_argument("--competitors", type=int, default=1)
    ap.add_argument("--modes", default="fixed,auto")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(child(a.steps, a.warmup)))
        return
    sys.path.insert(0, str(ROOT))
    from ulmfit.core.threads import available_cores

    rows = {}
    for mode in a.modes.split(","):
        for n in (0, a.competitors):
            row = measure(mode, n, a.steps, a.warmup)
            rows[mode, n] = row
            print(json.dumps(row), flush=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").exists() else ""
    summary = {"summary": "step slowdown beside busy processes (busy median / alone median)",
               "cpu": cpu, "available_cores": available_cores(), "competitors": a.competitors}
    base = rows.get(("fixed", 0), {}).get("median_step_s")
    for mode in a.modes.split(","):
        alone, busy = rows[mode, 0].get("median_step_s"), rows[mode, a.competitors].get("median_step_s")
        if alone and busy:
            summary[f"{mode}_alone_s"], summary[f"{mode}_busy_s"] = alone, busy
            summary[f"{mode}_slowdown"] = round(busy / alone, 2)
            if base:
                summary[f"{mode}_busy_vs_fixed_alone"] = round(busy / base, 2)
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
