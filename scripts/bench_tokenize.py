"""Tokenization benchmark on WikiText-2 train (629 articles split on ` = Title = ` headings).

Prints one JSON object per measurement: texts, tokens, seconds, tokens_per_second, peak_rss_mb.
``train_vocab``: ``TextTokenizer.train`` (``min_freq=3``; for ``word``, the numpy counting pass of
``word_counts``, one process per core); ``encode``: ``encode_flat``; ``train_vocab+encode``: the
two medians added (a corpus from raw text to ids, vocabulary included). ``--copies N`` streams N
concatenated copies through numericalize_to_memmap in chunks (ids go straight to a memory-mapped
file) to show that memory does not grow with the corpus.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ulmfit.text.tokenize.fast_words import pick_workers  # noqa: E402
from ulmfit.text.data.lm_data import numericalize_to_memmap  # noqa: E402
from ulmfit.text.data.readers import split_wikitext_articles  # noqa: E402
from ulmfit.text.tokenize.tokenizer import TextTokenizer  # noqa: E402


def rss_mb():
    """Peak RSS of this process plus the largest forked encoding worker (MB)."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024


def main():
    ap = argparse.ArgumentParser()
    data = Path(os.environ.get("ULMFIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    ap.add_argument("--file", default=str(data / "wikitext-2" / "train.txt"))
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--kind", default="word")
    a = ap.parse_args()
    arts = split_wikitext_articles(Path(a.file).read_text(encoding="utf-8"))
    train_times = []
    for _ in range(a.repeat if a.copies == 1 else 1):
        t0 = time.perf_counter()
        tok = TextTokenizer.train(arts, kind=a.kind, min_freq=3)
        train_times.append(time.perf_counter() - t0)
    train_s = sorted(train_times)[len(train_times) // 2]
    base = {"machine": os.uname().machine, "nproc": os.cpu_count(), "kind": a.kind}
    if a.copies == 1:
        print(json.dumps({**base, "measure": "train_vocab", "texts": len(arts), "seconds": round(train_s, 3),
                          "all_seconds": [round(x, 3) for x in train_times], "vocab": len(tok)}))
        tok.encode_flat(arts[:20])  # build the lookup table outside the timing
        for label, workers in (("encode", None), ("encode_1_process", 1)):
            times = []
            for _ in range(a.repeat):
                t0 = time.perf_counter()
                ids, lens = tok.encode_flat(arts, workers=workers)
                times.append(time.perf_counter() - t0)
            s = sorted(times)[len(times) // 2]
            print(json.dumps({**base, "measure": label, "texts": len(arts), "tokens": int(len(ids)),
                              "processes": pick_workers(arts, workers),
                              "seconds": round(s, 3), "tokens_per_second": round(len(ids) / s),
                              "all_seconds": [round(x, 3) for x in times],
                              "peak_rss_mb": round(rss_mb(), 1), "vocab": len(tok)}))
            if workers is None:
                best = s
        print(json.dumps({**base, "measure": "train_vocab+encode", "texts": len(arts),
                          "tokens": int(len(ids)), "seconds": round(train_s + best, 3),
                          "tokens_per_second": round(len(ids) / (train_s + best)),
                          "train_seconds": round(train_s, 3), "peak_rss_mb": round(rss_mb(), 1)}))
        return
    with tempfile.TemporaryDirectory() as d:
        texts = (t for _ in range(a.copies) for t in arts)
        t0 = time.perf_counter()
        ids, offs = numericalize_to_memmap(tok, texts, Path(d) / "ids.bin", chunk=500)
        s = time.perf_counter() - t0
        print(json.dumps({**base, "measure": f"memmap_{a.copies}_copies", "texts": len(offs) - 1,
                          "tokens": int(len(ids)), "seconds": round(s, 3),
                          "tokens_per_second": round(len(ids) / s), "dtype": ids.dtype.name,
                          "peak_rss_mb": round(rss_mb(), 1)}))


if __name__ == "__main__":
    main()
