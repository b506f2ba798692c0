"""Unlabelled sentences for distillation: cut movie reviews into sentences written the way the SST-2
sentences are (lower case, Penn-Treebank-style tokens: "do n't", "it 's", punctuation apart).

Tang et al. (2019) distil a BERT teacher into a BiLSTM over a large "transfer set" of unlabelled
in-domain sentences; IMDb's training reviews are movie reviews like SST-2's, so their sentences
make one. The labels of the reviews are not read. Writes one sentence per line (a seeded sample,
deduplicated, none of them an SST-2 sentence):

  python scripts/prep_transfer_sentences.py --n 100000 --out runs/transfer/imdb_sentences.txt

Prints one JSON line: sentences read, kept, written.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import re
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(])")
PUNCT = re.compile(r"([.,!?;:()\"]|--)")


def ptb_words(sentence: str) -> str:
    """Lower case and the SST-2 token conventions."""
    s = sentence.lower().replace("<br />", " ").replace("`", "'")
    s = re.sub(r"n't\b", " n't", s)
    s = re.sub(r"'(s|re|ve|ll|d|m)\b", r" '\1", s)
    s = PUNCT.sub(r" \1 ", s)
    s = s.replace('"', "")  # SST-2 writes no double quotes
    return " ".join(s.split())


def sentences(review: str):
    for part in SENT_END.split(review.replace("<br />", " ")):
        words = ptb_words(part)
        if 4 <= len(words.split()) <= 60:
            yield words


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reviews", default=str(DATA / "imdb" / "train.csv"), help="a CSV with a `text` column")
    ap.add_argument("--exclude", default=str(DATA / "sst2"), help="a folder of CSVs whose sentences are left out")
    ap.add_argument("--n", type=int, default=60000, help="sentences to write (all when fewer)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    exclude = set()
    for f in sorted(Path(args.exclude).glob("*.csv")) if args.exclude else []:
        exclude.update(r["text"] for r in csv.DictReader(f.open(encoding="utf-8")))
    seen, read = set(), 0
    with open(args.reviews, encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            for s in sentences(row["text"]):
                read += 1
                if s not in exclude:
                    seen.add(s)
    kept = sorted(seen)
    random.Random(args.seed).shuffle(kept)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(kept[:args.n]) + "\n", encoding="utf-8")
    print(json.dumps({"read": read, "kept": len(kept), "written": min(args.n, len(kept)), "out": str(out)}))


if __name__ == "__main__":
    main()
