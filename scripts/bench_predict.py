"""Batch prediction speed of a trained classifier (AWD-LSTM or transformers) on IMDb or SST-2 test texts (JSON lines).

    python scripts/bench_predict.py --model runs/cpu-small/classifier --n 2000 --bs 64

Times `TextClassifier.predict_proba` (tokenization included: one batch call to the tokenizer,
length-sorted batches under inference mode) and prints one JSON object per precision and batch
size (and ``--workers`` setting): docs, tokens, seconds, docs_per_second, tokenize_seconds, peak_rss_mb. Precisions
(``--precisions``): fp32, and int8 (the LSTMs' weights in int8, what `predict` uses on the CPU by
default); each int8 row gives the largest probability difference to fp32 on the same reviews,
and with ``--eval FILE`` (a labelled table the classifier knows, e.g. TREC-6 test) the accuracy
of each precision on it. Without --model it builds a random `small` classifier with a
vocabulary from IMDb train (speed does not depend on the weights). fastai side by side:
scripts/bench_vs_fastai.py.
"""

from __future__ import annotations

import argparse
import csv
import inspect
import json
import platform
import resource
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_imdb(split: str, n: int, dataset: str = "imdb") -> list[str]:
    with open(DATA / dataset / f"{split}.csv", newline="", encoding="utf-8") as f:
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
    ap.add_argument("--model", help="a train-classifier output folder or an ensemble (default: random `small`)")
    ap.add_argument("--arch", default="small")
    ap.add_argument("--n", type=int, default=2000, help="IMDb test reviews (25,000 for the full set)")
    ap.add_argument("--bs", default="64", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precisions", default="fp32,int8")
    ap.add_argument("--workers", default="auto",
                    help="comma-separated processes to share the batches out over (AWD-LSTM on the CPU): auto "
                         "(the default of predict: one per thread), or a number (1: this process only)")
    ap.add_argument("--eval", help="labelled file: accuracy of each precision on it (needs --model)")
    ap.add_argument("--docs", default="imdb", choices=["imdb", "sst2"],
                    help="the documents: IMDb test reviews, or SST-2 test sentences (short)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    from ulmfit.core.threads import predict_workers
    from ulmfit.phases import load_classifier

    base = load_classifier(args.model) if args.model else random_classifier(args.arch)
    texts = read_imdb("test", args.n, args.docs)
    ref = None
    for precision in args.precisions.split(","):
        if precision == "int8" and not hasattr(base, "int8"):
            continue  # a transformers classifier: fp32 only
        clf = base.int8() if precision == "int8" else base
        clf.predict_proba(texts[:64], bs=64)  # warm-up
        sharing = "workers" in inspect.signature(clf.predict_proba).parameters  # an AWD-LSTM classifier
        for bs, w in ((int(b), w) for b in args.bs.split(",") for w in args.workers.split(",")):
            if w != "auto" and not sharing:
                continue
            kw = {"workers": None if w == "auto" else int(w)} if sharing else {}
            t0 = time.perf_counter()
            # an AWD-LSTM classifier tokenizes in one call first; a transformers one inside predict_proba
            ids = clf.encode(texts) if hasattr(clf, "encode") else None
            t_tok = time.perf_counter() - t0
            probs = clf.predict_proba(texts if ids is None else None, bs=bs, ids=ids, **kw)
            secs = time.perf_counter() - t0
            ref = probs if ref is None else ref
            row = {"measurement": "predict", "model": args.model or f"random-{args.arch}", "precision": precision,
                   "docs": len(texts), "docs_from": args.docs,
                   # an ensemble's encode passes the texts through (each member tokenizes): no count
                   "tokens": None if ids is None or isinstance(ids[0], str) else int(sum(len(i) for i in ids)),
                   "bs": bs, "threads": args.threads,
                   "workers": predict_workers(len(texts), bs, next(clf.model.parameters()).device,
                                              kw.get("workers")) if sharing else 1,
                   "seconds": round(secs, 2), "tokenize_seconds": round(t_tok, 2),
                   "docs_per_second": round(len(texts) / secs, 1),
                   "max_prob_diff_vs_first": float(np.abs(probs - ref).max()),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                   "peak_rss_largest_worker_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
                   "cpu": cpu_name(), "torch": torch.__version__}
            if args.eval:
                row.update(eval_accuracy(clf, args.eval))
            print(json.dumps(row), flush=True)


def cpu_name() -> str:
    try:
        return next(ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                    if ln.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def eval_accuracy(clf, path: str) -> dict:
    from ulmfit.text.data.readers import read_texts

    texts, labels = read_texts(path, ["text"], "label")
    preds = clf.predict_proba(texts).argmax(1)
    known = [clf.classes.index(str(y)) for y in labels]
    return {"eval_file": path, "eval_accuracy": round(float((preds == np.array(known)).mean()), 4)}


if __name__ == "__main__":
    main()
