"""How much of a long document an AWD-LSTM classifier must read (issue 24, item 8).

    python scripts/long_document_warmup.py LM_FOLDER [MAX_LEN]

Builds a classifier encoder from a trained language model (pretrain / finetune-lm output) and, on
IMDb test reviews longer than MAX_LEN + 11 chunks, compares the pooled BPT3C features of the
whole review with those of its last MAX_LEN + W chunks only (``tail_ids``, whole chunks dropped
from the front), for W warm-up chunks. Prints one JSON object per W: mean / max relative
difference of the features and the smallest cosine similarity. The classifier's default
``max_tokens`` (max_len + 10 chunks) comes from this curve (docs/results.md).
"""
import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
IMDB_TEST = ROOT.parent / "shared" / "data" / "imdb" / "test.csv"


@torch.no_grad()
def pooled(clf, docs) -> torch.Tensor:
    return torch.stack([clf.features(torch.from_numpy(a)[None])[0] for a in docs])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lm", help="a language-model folder (pretrain / finetune-lm output)")
    ap.add_argument("max_len", type=int, nargs="?", default=144)
    ap.add_argument("--bptt", type=int, default=72)
    ap.add_argument("--docs", type=int, default=150)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT))
    from ulmfit.phases.backends import load_language_model
    from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier, classifier_encoder_config
    from ulmfit.text.data.class_data import tail_ids

    torch.set_num_threads(2)
    lm, tok = load_language_model(a.lm)
    clf = AWDLSTMClassifier(classifier_encoder_config(lm.config, 0.5), 2, bptt=a.bptt, max_len=a.max_len)
    clf.encoder.load_state_dict(lm.encoder.state_dict())
    clf.eval()
    with open(IMDB_TEST, newline="", encoding="utf-8") as f:
        texts = [r["text"] for r in csv.DictReader(f)][::5]
    ids = [np.asarray(i, dtype=np.int64) for i in tok.encode_batch(texts, as_numpy=True)]
    window = -(-a.max_len // a.bptt)  # chunks pooled over
    docs = [i for i in ids if len(i) > (window + 11) * a.bptt][:a.docs]
    print(json.dumps({"docs": len(docs), "mean_tokens": round(float(np.mean([len(i) for i in docs])), 1),
                      "max_len": a.max_len, "bptt": a.bptt}))
    whole = pooled(clf, docs)
    for w in (0, 1, 2, 3, 4, 6, 10):
        cap = (window + w) * a.bptt
        f = pooled(clf, [tail_ids(d, cap, a.bptt) for d in docs])
        rel = (f - whole).norm(dim=1) / whole.norm(dim=1)
        cos = torch.nn.functional.cosine_similarity(f, whole, dim=1)
        print(json.dumps({"warmup_chunks": w, "max_tokens": cap, "rel_diff_mean": round(float(rel.mean()), 5),
                          "rel_diff_max": round(float(rel.max()), 5), "cos_min": round(float(cos.min()), 5)}))


if __name__ == "__main__":
    main()
