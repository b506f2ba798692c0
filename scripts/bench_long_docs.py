"""Long documents in a transformers classifier: truncation against the mean over windows, in one pass (JSON).

    python scripts/bench_long_docs.py --model runs/imdb-minilm --n 5000 --max-length 512

Reads a stratified, seeded sample (`data.train_size`'s draw) of IMDb test reviews (or any labelled CSV with --test), runs the
classifier once over every window of `--max-length` tokens of each review, and reports two
readings of the same forward passes: `truncate` (a review's first window, i.e. its first
max_length tokens, which is what truncation sees) and `windows` (the mean of its windows'
probabilities). Prints one JSON object: accuracy and macro-F1 of each, how many reviews are longer
than one window, windows per review, seconds, docs per second, the CPU.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np
import torch

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def read_rows(path: Path, text_col: str, label_col: str):
    with open(path, newline="", encoding="utf-8") as f:
        rows = [(r[text_col], r[label_col]) for r in csv.DictReader(f)]
    return [t for t, _ in rows], [y for _, y in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a transformers train-classifier run (or its model/ folder)")
    ap.add_argument("--test", default=str(DATA / "imdb" / "test.csv"), help="labelled CSV (default: IMDb test)")
    ap.add_argument("--text-col", default="text")
    ap.add_argument("--label-col", default="label")
    ap.add_argument("--n", type=int, default=2000, help="reviews, a stratified seeded sample (0: all)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-length", type=int, help="tokens per window (default: the model's max_length)")
    ap.add_argument("--bs", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    from bench_predict import cpu_name
    from ulmfit.phases.sampling import subsample
    from ulmfit.text.data.readers import Split
    from ulmfit.text.transformers.backbone import mean_by_text
    from ulmfit.text.transformers.data import text_metrics
    from ulmfit.text.transformers.text_classifier import TransformersTextClassifier

    folder = Path(args.model)
    folder = folder / "model" if (folder / "model").is_dir() else folder
    model = TransformersTextClassifier.load(folder).model
    if args.max_length:
        model.max_length = args.max_length
    texts, labels = read_rows(Path(args.test), args.text_col, args.label_col)
    names = [str(c) for c in model.labels]
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise SystemExit(f"labels {unknown} of {args.test} are unknown to the classifier ({names})")
    split = subsample(Split(texts, np.array([names.index(v) for v in labels])), args.n or None, args.seed)
    texts, y = split.texts, split.labels.tolist()
    t0 = time.perf_counter()
    win, doc = model.window_proba(texts, args.bs, long_docs="windows")
    secs = time.perf_counter() - t0
    doc = torch.tensor(doc)
    counts = torch.bincount(doc, minlength=len(texts))
    first = torch.cat([torch.zeros(1, dtype=torch.long), counts.cumsum(0)[:-1]])  # rows are grouped by text
    mean = mean_by_text(win, doc, len(texts))
    out = {"model": str(folder), "test": args.test, "docs": len(texts), "max_length": model.max_length,
           "longer_than_one_window": int((counts > 1).sum()), "windows_per_doc": round(float(counts.float().mean()), 3),
           "max_windows": int(counts.max()), "seconds": round(secs, 1), "docs_per_second": round(len(texts) / secs, 2),
           "threads": args.threads, "cpu": cpu_name()}
    for name, probs in (("truncate", win[first]), ("windows", mean)):
        m = text_metrics(probs, y, name)
        out.update({k: round(v, 4) for k, v in m.items()})
        long = counts > 1  # where the two readings can differ
        if long.any():
            out[f"{name}_accuracy_long"] = round(float((probs[long].argmax(-1) == torch.tensor(y)[long])
                                                       .float().mean()), 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
