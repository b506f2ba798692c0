"""Classifier serving throughput on CPU: onnxruntime (``model.onnx``) vs PyTorch, IMDb test reviews.

Prints one JSON line per measurement (docs/second, tokens/second) plus one line with the
largest probability difference between the two. Both sides get the same texts, tokenizer,
length-sorted batches and thread count; tokenization is included in the timing (it is the
same code on both sides).

The model is either an exported folder / run folder (``--model``), or, by default, a randomly
initialised classifier of the ``small`` preset (emb 200, hidden 400, 3 layers; the cpu-small
recipe's size) with a word tokenizer trained on the first 5,000 IMDb training reviews: speed does
not depend on the weights' values, so this measures a realistically sized model without a
long training run.

Usage: python scripts/bench_onnx.py [--model DIR] [--arch small|paper] [--n 2000] [--bs 64]
       [--threads 1,2] [--repeat 1]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ULMFIT_DATA", ROOT.parent / "shared" / "data")) / "imdb"


def read_texts(path: Path, n: int) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        return [row["text"] for _, row in zip(range(n), csv.DictReader(f))]


def build_classifier(args):
    from ulmfit.hub import export_run, is_exported, load_exported_classifier
    from ulmfit.text.awd_lstm.text_classifier import TextClassifier

    tmp = Path(tempfile.mkdtemp(prefix="bench_onnx_"))
    if args.model:
        src = Path(args.model)
        if is_exported(src) and (src / "model.onnx").is_file():
            return load_exported_classifier(src), src / "model.onnx", str(src)
        out = tmp / "hub"
        export_run(src, out, onnx=True)
        return load_exported_classifier(out), out / "model.onnx", str(src)
    import torch

    from ulmfit.hub.onnx import export_onnx
    from ulmfit.text.awd_lstm.model import AWDLSTMConfig
    from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier, classifier_encoder_config
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    torch.manual_seed(0)
    tok = TextTokenizer.train(read_texts(DATA / "train.csv", 5000), min_freq=3)
    cfg = classifier_encoder_config(AWDLSTMConfig.preset(args.arch, len(tok)), 0.5)
    model = AWDLSTMClassifier(cfg, 2, bptt=72, max_len=72 * 20).eval()
    clf = TextClassifier(model, tok, ["neg", "pos"])
    path = export_onnx(model, tmp / "model.onnx")
    return clf, path, f"random {args.arch} AWD-LSTM, vocab {len(tok)}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", help="exported folder (with model.onnx) or a run/classifier folder")
    ap.add_argument("--arch", default="small", choices=["small", "paper"])
    ap.add_argument("--n", type=int, default=2000, help="IMDb test reviews (first n)")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    from ulmfit.hub.onnx import OnnxPredictor

    clf, onnx_path, what = build_classifier(args)
    texts = read_texts(DATA / "test.csv", args.n)
    n_tokens = int(clf.tokenizer.encode_flat(texts)[1].sum())
    common = {"model": what, "docs": len(texts), "tokens": n_tokens, "bs": args.bs,
              "cpu": platform.processor() or platform.machine(), "torch": torch.__version__}
    probs = {}
    for threads in [int(t) for t in args.threads.split(",")]:
        torch.set_num_threads(threads)
        ort = OnnxPredictor(onnx_path, clf.tokenizer, threads=threads)
        ort.predict_proba(texts[:8], bs=args.bs)  # warm-up
        clf.predict_proba(texts[:8], bs=args.bs)
        for name, fn in (("pytorch", clf.predict_proba), ("onnxruntime", ort.predict_proba)):
            best = float("inf")
            for _ in range(args.repeat):
                t0 = time.perf_counter()
                probs[name] = fn(texts, bs=args.bs)
                best = min(best, time.perf_counter() - t0)
            import onnxruntime

            print(json.dumps({**common, "runtime": name, "threads": threads, "seconds": round(best, 3),
                              "docs_per_s": round(len(texts) / best, 2),
                              "tokens_per_s": round(n_tokens / best, 1),
                              **({"onnxruntime": onnxruntime.__version__} if name == "onnxruntime" else {})}),
                  flush=True)
    diff = float(np.abs(probs["pytorch"] - probs["onnxruntime"]).max())
    print(json.dumps({**common, "max_abs_prob_diff": diff}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
