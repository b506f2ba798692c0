"""Batch prediction speed of a trained AWD-LSTM classifier on IMDb test reviews (JSON lines).

    python scripts/bench_predict.py --model runs/cpu-small/classifier --n 2000 --bs 64

Times `TextClassifier.predict_proba` (tokenization included: one batch call to the Rust
tokenizer, length-sorted batches under inference mode) and prints one JSON object per batch
size: docs, tokens, seconds, docs_per_second, tokenize_seconds, peak_rss_mb. Without --model it
builds a random `small` classifier with a vocabulary from IMDb train (speed does not depend on
the weights). fastai's figure on this kind of machine: 9.3 docs/s (../shared/BENCHMARKS.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import time
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_imdb(split: str, n: int) -> list[str]:
    with open(DATA / "imdb" / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    step = max(1, len(rows) // n)  # both labels: the file is sorted neg then pos
    return [r["text"] for r in rows[::step][:n]]


def random_classifier(arch: str):
    from ulmfit.text.awd_lstm.model import AWDLSTMConfig
    from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier, classifier_encoder_config
    from ulmfit.text.awd_lstm.text_classifier import TextClassifier
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    tok = TextTokenizer.train(read_imdb("train", 5000))
    cfg = classifier_encoder_config(AWDLSTMConfig.preset(arch, len(tok)), 0.5)
    return TextClassifier(AWDLSTMClassifier(cfg, 2).eval(), tok, ["neg", "pos"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="a train-classifier output folder (default: random `small`)")
    ap.add_argument("--arch", default="small")
    ap.add_argument("--n", type=int, default=2000, help="IMDb test reviews (25,000 for the full set)")
    ap.add_argument("--bs", default="64", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from ulmfit.phases import load_classifier

    clf = load_classifier(args.model) if args.model else random_classifier(args.arch)
    texts = read_imdb("test", args.n)
    clf.predict_proba(texts[:64], bs=64)  # warm-up
    for bs in (int(b) for b in args.bs.split(",")):
        t0 = time.perf_counter()
        ids = clf.encode(texts)
        t_tok = time.perf_counter() - t0
        clf.predict_proba(None, bs=bs, ids=ids)
        secs = time.perf_counter() - t0
        print(json.dumps({
            "measurement": "predict", "model": args.model or f"random-{args.arch}", "docs": len(texts),
            "tokens": int(sum(len(i) for i in ids)), "bs": bs, "threads": args.threads,
            "seconds": round(secs, 2), "tokenize_seconds": round(t_tok, 2),
            "docs_per_second": round(len(texts) / secs, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
