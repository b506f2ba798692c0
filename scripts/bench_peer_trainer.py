"""The transformers-``Trainer`` peer of shared/BENCHMARKS.md, re-runnable at any seed.

A plain ``AutoModelForSequenceClassification`` + ``Trainer`` fine-tune of MiniLM-L6 on TREC-6 or
SST-2 with the peer's settings (lr 5e-5, batch 32, linear schedule with 10% warm-up, weight decay
0.01, max length 64, full fine-tuning, fp32). It exists so that ulmfit's transformers recipe can be
compared with the peer over the same seeds (BENCHMARKS.md gives the peer at seed 42 only). No
ulmfit code is used. One JSON line per run.

Example:
  python scripts/bench_peer_trainer.py --seeds 42 1 2 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_transformers import default_model, read_csv, subset  # noqa: E402


def run_one(args, seed):
    import numpy as np
    import torch
    from datasets import Dataset
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer,
                              DataCollatorWithPadding, Trainer, TrainingArguments, set_seed)

    d = Path(args.data) / args.task
    train_t, train_y = read_csv(d / "train.csv")
    test_t, test_y = read_csv(d / "test.csv")
    if args.train_csv:  # a drawn few-shot subset (scripts/bench_fewshot.py), used as it is
        train_t, train_y = read_csv(Path(args.train_csv))
    else:
        n = None if args.n_labels == "all" else int(args.n_labels)
        # the subset is stratified with seed 42 whatever the training seed, as in BENCHMARKS.md
        train_t, train_y = subset(train_t, train_y, n, 42)
    classes = sorted(set(train_y))
    index = {c: i for i, c in enumerate(classes)}
    model_dir = args.model or default_model()
    tok = AutoTokenizer.from_pretrained(model_dir)

    def encode(texts, labels):
        ds = Dataset.from_dict({"text": texts, "label": [index[y] for y in labels]})
        return ds.map(lambda b: tok(b["text"], truncation=True, max_length=args.max_length),
                      batched=True, remove_columns=["text"])

    set_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(classes))
    with tempfile.TemporaryDirectory() as out:
        targs = TrainingArguments(
            output_dir=out, learning_rate=args.lr, per_device_train_batch_size=32,
            per_device_eval_batch_size=64, num_train_epochs=args.epochs, lr_scheduler_type="linear",
            warmup_steps=0.1, weight_decay=0.01, seed=seed, save_strategy="no", report_to=[],
            logging_strategy="no", use_cpu=True, disable_tqdm=True)
        trainer = Trainer(model=model, args=targs, train_dataset=encode(train_t, train_y),
                          data_collator=DataCollatorWithPadding(tok))
        t0 = time.perf_counter()
        trainer.train()
        secs = time.perf_counter() - t0
        pred = trainer.predict(encode(test_t, test_y))
    from sklearn.metrics import f1_score

    guess = np.argmax(pred.predictions, -1)
    acc = float((guess == pred.label_ids).mean())
    f1 = float(f1_score(pred.label_ids, guess, average="macro"))
    return {"peer": "transformers.Trainer", "task": args.task, "n_labels": args.n_labels,
            "epochs": args.epochs, "lr": args.lr, "seed": seed, "test_accuracy": round(acc, 4),
            "test_macro_f1": round(f1, 4),
            "train_seconds": round(secs, 1), "threads": torch.get_num_threads()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--task", default="trec6", choices=["trec6", "sst2"])
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--model", default=None, help="transformers folder (default: MiniLM-L6 package)")
    ap.add_argument("--n-labels", default="all", help="a number or 'all'")
    ap.add_argument("--train-csv", default=None, help="train on this CSV (text,label) instead of a subset")
    ap.add_argument("--epochs", type=float, default=4)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--max-length", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[42])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    for seed in args.seeds:
        print(json.dumps(run_one(args, seed)), flush=True)


if __name__ == "__main__":
    main()
