"""Commands that use a trained model: evaluate (a classifier's metrics, an LM's perplexity),
predict (one row per text, in input order) and generate."""

from __future__ import annotations

import csv
import io
import json
import sys
from pathlib import Path

from ulmfit.core.accel import cpu_has_bf16
from ulmfit.core.device import resolve_device
from ulmfit.core.predictions import EnsembleClassifier
from ulmfit.core.threads import fit_to_cores
from ulmfit.errors import UlmfitError
from ulmfit.phases import reports
from ulmfit.phases.backends import generate, load_classifier, load_language_model
from ulmfit.phases.classifier import evaluate_split, write_evaluation
from ulmfit.phases.common import is_table
from ulmfit.phases.runs import check_out_dir, read_run
from ulmfit.text.awd_lstm.lm_train import perplexity
from ulmfit.text.awd_lstm.quantize import int8_available
from ulmfit.text.awd_lstm.text_classifier import TextClassifier
from ulmfit.text.data.readers import encode_labels, load_corpus, read_lines, read_texts

__all__ = ["evaluate", "predict_cli", "generate"]


def evaluate(model_dir: str, data: str, text_cols=None, label_col=None, out=None, bs: int = 64,
             device: str | None = None, verify: bool = True) -> dict:
    """Metrics of a saved classifier on a labelled file (labels it never saw are an error), or the
    perplexity of a saved language model on any text file; on the CPU or on ``device``."""
    if out:
        check_out_dir(out, "--out folder")
    fit_to_cores()
    if read_run(model_dir).kind == "lm":
        return _lm_perplexity(model_dir, data, text_cols, out, device, verify)
    clf = load_classifier(model_dir, device, verify)
    saved = _train_cols(model_dir)
    texts, raw = read_texts(data, text_cols or saved[0], label_col or saved[1],
                            label_delim=saved[2] if clf.multi_label else None)
    labels = encode_labels(raw, clf.classes, str(data), clf.multi_label)
    metrics, preds = evaluate_split(clf, clf.encode(texts), labels, "test", bs)
    if out:
        o = Path(out)
        o.mkdir(parents=True, exist_ok=True)
        reports.write_metrics(o, metrics)
        write_evaluation(o, clf, metrics, preds, labels, "test")
    return {k: v for k, v in metrics.items() if not isinstance(v, list)}


def _lm_perplexity(model_dir: str, data: str, text_cols, out, device: str | None = None,
                   verify: bool = True) -> dict:
    model, tokenizer = load_language_model(model_dir, verify)
    if device:
        model.to(resolve_device(device))
    texts = list(load_corpus(data, text_cols=(text_cols or ["text"]) if is_table(data) else None))
    m = perplexity(model, tokenizer, texts)
    metrics = {"test_loss": m["loss"], "test_perplexity": m["perplexity"], "test_tokens": m["tokens"]}
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        reports.write_metrics(Path(out), metrics)
    return metrics


def _train_cols(model_dir: str):
    """(text_cols, label_col, label_delim) the classifier was trained with, from its config.yaml."""
    info = read_run(model_dir)
    if info.kind == "ensemble":  # the members were trained on the same columns: ask the first
        return _train_cols(EnsembleClassifier.member_dirs(info.path)[0])
    d = info.config().get("data", {})
    return d.get("text_cols", ["text"]), d.get("label_col", "label"), d.get("label_delim", "|")


def predict_cli(model_dir: str, texts=None, file=None, text_cols=None, top_k: int = 1, fmt: str = "jsonl",
                bs: int = 64, device: str | None = None, verify: bool = True, precision: str = "auto") -> None:
    """Print predictions for texts (arguments or a file) to stdout, one per input, in order."""
    if fmt not in ("jsonl", "csv"):
        raise UlmfitError(f"--format must be jsonl or csv, got {fmt!r}")
    if precision not in PRECISIONS:
        raise UlmfitError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    fit_to_cores()
    clf = with_precision(load_classifier(model_dir, device, verify), precision)
    if file:
        texts = (read_texts(file, text_cols or _train_cols(model_dir)[0])[0] if is_table(file)
                 else read_lines(file))
    texts = list(texts or [])
    if not any(t.strip() for t in texts):
        raise UlmfitError("no texts to classify")
    rows = _rows_in_input_order(clf, texts, bs, top_k)
    if fmt == "jsonl":
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in rows))
        return
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["text", "label", "probability"] + [f"top{i + 1}" for i in range(top_k)])
    for r in rows:
        prob = "" if r["probability"] is None else f"{r['probability']:.6f}"
        w.writerow([r["text"], r["label"] or "", prob] + [f"{k['label']}:{k['probability']:.6f}" for k in r["top_k"]])
    sys.stdout.write(buf.getvalue())


PRECISIONS = ("auto", "fp32", "int8", "bf16")


def auto_cpu_precision() -> str:
    """What ``auto`` means for an AWD-LSTM classifier on this CPU: bf16, int8 or fp32."""
    return "bf16" if cpu_has_bf16() else "int8" if int8_available() else "fp32"


def with_precision(clf, precision: str):
    """The classifier to predict with. An AWD-LSTM classifier (or an ensemble of them, member by
    member) on the CPU takes, with ``auto``, bf16 autocast where the CPU has bf16 matrix instructions
    (AVX512-BF16 or AMX), else int8 LSTM weights where the CPU has an int8 engine, else fp32; the
    other classifiers are used as loaded."""
    members = clf.members if isinstance(clf, EnsembleClassifier) else [clf]
    awd = all(isinstance(m, TextClassifier) for m in members)
    awd_on_cpu = awd and all(next(m.model.parameters()).device.type == "cpu" for m in members)
    if precision == "int8" and not awd_on_cpu:
        raise UlmfitError("--precision int8 is for AWD-LSTM classifiers on the CPU; use fp32 (or auto)")
    if precision == "bf16" and not awd:
        raise UlmfitError("--precision bf16 is for AWD-LSTM classifiers; use fp32 (or auto)")
    if precision == "auto" and awd_on_cpu:
        precision = auto_cpu_precision()
    if precision == "bf16":
        return clf.bf16()
    if precision == "int8":
        return clf.int8()
    return clf


def _rows_in_input_order(clf, texts: list[str], bs: int, top_k: int) -> list[dict]:
    """One row per input text, in order; a blank input gets a row with no label (so output line N
    answers input line N)."""
    keep = [i for i, t in enumerate(texts) if t.strip()]
    rows: list[dict] = [{"text": t, "label": None, "probability": None, "top_k": []} for t in texts]
    for i, r in zip(keep, clf.predict([texts[i] for i in keep], bs=bs, top_k=top_k)):
        rows[i] = r
    return rows
