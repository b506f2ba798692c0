"""ulmfit against fastai on the same documents in one run: tokenization, LM training step and prediction.

    python scripts/bench_vs_fastai.py [--fastai-python /path/to/fastai-env/bin/python]
        [--only tokenize,lm,predict] [--repeat 3] [--articles 0] [--lm-steps 20] [--lm-warmup 3] [--lm-rounds 3]
        [--n-docs 2000] [--train-docs 5000] [--threads 2] [--bs 64] [--table PATH]

Two interpreters: ulmfit's measurements run in ``--python`` and fastai's in ``--fastai-python`` (both
default to the interpreter running this script), so the script can run from an environment without
fastai and still time fastai installed elsewhere (that interpreter also needs ulmfit's dependencies:
the repository is put on its PYTHONPATH for the data readers and bench_lm's model sizes). Where fastai cannot be imported in
``--fastai-python``, a ``{"fastai": "not installed", ...}`` line says so and ulmfit is measured alone
(no ratios). Every measurement runs in its own child process, so its peak RSS is its own:
``peak_rss_mb`` is that process's, ``workers_peak_rss_mb`` the largest worker it forked (a tokenizer
or DataLoader worker; null if none), pages shared with the parent included, so the two added are an
upper bound. The CPU is the device: children run with CUDA hidden.

Rows (``measurement``; ``seconds`` is the median over ``--repeat`` for tokenization):
  tokenize        WikiText-2 train articles (``split_wikitext_articles``; ``--articles N``: the first N)
                  to tokens. ulmfit: ``encode_flat`` with the vocabulary already built (text to ids,
                  one process per core); fastai: ``tokenize_texts`` (default rules + spaCy, ``--threads`` workers,
                  text to token strings). Rate: tokens/s (each tool's own token count).
  tokenize+vocab  the same articles from raw text to ids, vocabulary included. ulmfit:
                  ``TextTokenizer.train(min_freq=3)`` + ``encode_flat``; fastai: ``tokenize_df``
                  + ``make_vocab(min_freq=3)`` + ``Numericalize``.
  lm_step_fp32    one LM training step of the ``small`` AWD-LSTM (emb 200, hidden 400, 3 layers), batch
  lm_step_bf16    64 x 72, WikiText-2 vocabulary (``scripts/bench_lm.py --impls ulmfit`` / ``fastai``:
                  fastai's own model, loss and Adam). bf16 autocast only on CPUs with avx512_bf16 or
                  amx_bf16 (elsewhere a note says it was skipped). Rate: tokens/s. Each tool is
                  measured ``--lm-rounds`` times in alternating order (ABBA); seconds: the median.
  lm_step_default each tool's default precision, from the rows above (no extra run): ulmfit's
                  ``resolve_mixed_precision("auto")`` (bf16 where the CPU has it, else fp32), fastai fp32.
  predict         ``--n-docs`` IMDb test reviews (every k-th row, both labels: bench_predict's selection)
                  through a random ``small`` classifier, vocabulary from the same ``--train-docs`` IMDb
                  train reviews (min_freq 3), batch ``--bs``, tokenization included. ulmfit:
                  ``TextClassifier.predict_proba``; fastai: ``text_classifier_learner(AWD_LSTM,
                  pretrained=False)``, ``learn.get_preds(dl=dls.test_dl(texts))`` with fastai's defaults
                  (DataLoader workers = min(16, cores)). Rate: docs/s. ``--threads``: torch threads, both.

Output: one JSON object per measurement and tool, one summary JSON (``speedup``: fastai seconds /
ulmfit seconds for the same work = ulmfit rate / fastai rate), then a markdown table naming the CPU
model, nproc, torch and fastai versions and the date (to ``--table PATH``, or stdout after the JSON).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))
from bench_lm import cpu_info  # standard library only at import

DATA = Path(os.environ.get("ULMFIT_DATA", ROOT.parent / "shared" / "data"))
SMALL = {"emb_sz": 200, "n_hid": 400, "n_layers": 3}  # our `small` preset, in fastai's names
TOOLS = ("ulmfit", "fastai")
WHAT = {"tokenize": "tokenize, vocabulary given", "tokenize+vocab": "tokenize + vocabulary + ids",
        "lm_step_fp32": "LM step fp32", "lm_step_bf16": "LM step bf16 autocast",
        "lm_step_default": "LM step, each tool's default", "predict_fp32": "predict, fp32 (tokenization included)",
        "predict": "predict, each tool's default (ulmfit: `--precision auto`; tokenization included)"}


def rss_mb(who=resource.RUSAGE_SELF) -> float:
    """Peak RSS (MB) of this process, or (RUSAGE_CHILDREN) of its largest reaped child."""
    return resource.getrusage(who).ru_maxrss / 1024


def articles(n: int) -> list[str]:
    from ulmfit.text.data.readers import split_wikitext_articles

    arts = split_wikitext_articles((DATA / "wikitext-2" / "train.txt").read_text(encoding="utf-8"))
    return arts[:n] if n else arts


def imdb_rows(split: str, n: int) -> list[dict]:
    """bench_predict.read_imdb's selection (every k-th row: the file is sorted neg then pos), with labels."""
    with open(DATA / "imdb" / f"{split}.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows[::max(1, len(rows) // n)][:n]


# --- children: one measurement each ----------------------------------------------------------------
def ulmfit_tokenize_job(arts: list[str], with_vocab: bool):
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    TextTokenizer.train(arts[:20], min_freq=3).encode_flat(arts[:20])  # imports, outside the timing
    if with_vocab:
        def job():
            tok = TextTokenizer.train(arts, min_freq=3)
            return len(tok.encode_flat(arts)[0]), len(tok)
        return job, {}
    tok = TextTokenizer.train(arts, min_freq=3)
    tok.encode_flat(arts[:20])  # builds the lookup table
    return (lambda: (len(tok.encode_flat(arts)[0]), len(tok))), {}


def fastai_tokenize_job(arts: list[str], with_vocab: bool, workers: int):
    import pandas as pd
    from fastai.text.all import Numericalize, make_vocab, tokenize_df, tokenize_texts

    tokenize_texts(arts[:20], n_workers=workers)  # imports, spaCy, outside the timing
    if with_vocab:
        df = pd.DataFrame({"text": arts})

        def job():
            out, counts = tokenize_df(df, "text", n_workers=workers)
            num = Numericalize(make_vocab(counts, min_freq=3))
            ids = [num(t) for t in out["text"]]
            return sum(len(i) for i in ids), len(num.vocab)
        return job, {"workers": workers}
    return (lambda: (sum(len(t) for t in tokenize_texts(arts, n_workers=workers)), None)), {"workers": workers}


def child_tokenize(spec: dict) -> dict:
    arts, with_vocab = articles(spec["articles"]), spec["measurement"] == "tokenize+vocab"
    if spec["tool"] == "fastai":
        job, extra = fastai_tokenize_job(arts, with_vocab, spec["threads"])
    else:
        job, extra = ulmfit_tokenize_job(arts, with_vocab)
    times = []
    for _ in range(spec["repeat"]):
        t0 = time.perf_counter()
        tokens, vocab = job()
        times.append(time.perf_counter() - t0)
    s = statistics.median(times)
    return {"texts": len(arts), "tokens": tokens, "vocab": vocab, "seconds": round(s, 3),
            "rate": round(tokens / s), "unit": "tokens/s", "all_seconds": [round(x, 3) for x in times], **extra}


def ulmfit_predictor(train: list[dict], bs: int, precision: str = "auto"):
    from ulmfit.text.awd_lstm.classifier import (
        AWDLSTMClassifier,
        classifier_encoder_config,
    )
    from ulmfit.text.awd_lstm.model import AWDLSTMConfig
    from ulmfit.text.awd_lstm.text_classifier import TextClassifier
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    tok = TextTokenizer.train([r["text"] for r in train], min_freq=3)
    cfg = classifier_encoder_config(AWDLSTMConfig.preset("small", len(tok)), 0.5)
    clf = TextClassifier(AWDLSTMClassifier(cfg, 2).eval(), tok, ["neg", "pos"])
    from ulmfit.phases.use import with_precision

    clf = with_precision(clf, precision)  # what `ulmfit predict --precision` does (auto: bf16 or int8 on the CPU)
    return (lambda texts: clf.predict_proba(texts, bs=bs)), len(tok)


def fastai_predictor(train: list[dict], bs: int):
    import pandas as pd
    import torch
    from fastai.text.all import (
        AWD_LSTM,
        TextDataLoaders,
        awd_lstm_clas_config,
        text_classifier_learner,
    )

    df = pd.DataFrame({"label": [r["label"] for r in train], "text": [r["text"] for r in train]})
    valid = df.iloc[:2].assign(is_valid=True)  # a validation set fastai wants; 2 rows barely touch the vocab
    df = pd.concat([df.assign(is_valid=False), valid], ignore_index=True)
    dls = TextDataLoaders.from_df(df, text_col="text", label_col="label", valid_col="is_valid", bs=bs,
                                  seq_len=72, min_freq=3, device=torch.device("cpu"))
    learn = text_classifier_learner(dls, AWD_LSTM, pretrained=False, drop_mult=0.5,
                                    config=dict(awd_lstm_clas_config, **SMALL))

    def predict(texts):
        with learn.no_bar(), learn.no_logging():
            return learn.get_preds(dl=learn.dls.test_dl(texts, bs=bs))[0]
    return predict, len(dls.vocab[0])


def child_predict(spec: dict) -> dict:
    import torch

    torch.set_num_threads(spec["threads"])
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    train = imdb_rows("train", spec["train_docs"])
    if spec["tool"] == "fastai":
        predict, vocab = fastai_predictor(train, spec["bs"])
    else:
        predict, vocab = ulmfit_predictor(train, spec["bs"], spec.get("precision", "auto"))
    texts = [r["text"] for r in imdb_rows("test", spec["n_docs"])]
    predict(texts[:spec["bs"]])  # warm-up
    t0 = time.perf_counter()
    probs = predict(texts)
    s = time.perf_counter() - t0
    assert len(probs) == len(texts)
    return {"docs": len(texts), "train_docs": spec["train_docs"], "vocab": vocab, "bs": spec["bs"],
            "seconds": round(s, 3), "rate": round(len(texts) / s, 2), "unit": "docs/s"}


def child_info(spec: dict) -> dict:
    import torch

    info = {"python": sys.executable, "torch": torch.__version__}
    if spec["tool"] == "fastai":
        try:
            import fastai
            info["fastai"] = fastai.__version__
        except ImportError:
            info["fastai"] = None
    else:
        from ulmfit.core.accel import resolve_mixed_precision
        info["default_precision"] = {"bf16": "bf16", "no": "fp32"}.get(resolve_mixed_precision("auto"), "fp32")
        from ulmfit.phases.use import auto_cpu_precision

        info["predict_precision"] = {"bf16": "bf16 autocast", "int8": "int8 LSTM weights"}.get(auto_cpu_precision(), "fp32")
    return info


def child_main(spec: dict) -> None:
    # the tool's imports first: torch's runs `ldconfig`, a forked child with the parent's RSS, which
    # is not a worker; a child peak above this baseline is a worker forked by the measurement
    if spec["part"] != "info":
        __import__({"fastai": "fastai.text.all", "ulmfit": "ulmfit.text.tokenize.tokenizer" if
                    spec["part"] == "tokenize" else "ulmfit.text.awd_lstm.text_classifier"}[spec["tool"]])
    before = rss_mb(resource.RUSAGE_CHILDREN)
    fn = {"info": child_info, "tokenize": child_tokenize, "predict": child_predict}[spec["part"]]
    out = fn(spec)
    if spec["part"] != "info":
        workers = rss_mb(resource.RUSAGE_CHILDREN)
        out = {"tool": spec["tool"], "measurement": spec["measurement"], **out, "threads": spec["threads"],
               "peak_rss_mb": round(rss_mb(), 1),
               "workers_peak_rss_mb": round(workers, 1) if workers > before else None}
    print(json.dumps(out), flush=True)


# --- parent: runs the children, prints rows, summary and table -------------------------------------
def child_env() -> dict:
    return dict(os.environ, CUDA_VISIBLE_DEVICES="", PYTHONPATH=os.pathsep.join(
        [str(ROOT)] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))


def run_child(py: str, spec: dict) -> dict:
    r = subprocess.run([py, __file__, "--child", json.dumps(spec)], check=False, capture_output=True,
                       text=True, env=child_env(), cwd=ROOT)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode or not lines:
        return {"tool": spec["tool"], "measurement": spec.get("measurement", spec["part"]),
                "error": (r.stderr.strip().splitlines() or [f"exit {r.returncode}"])[-1]}
    return json.loads(lines[-1])


def lm_rows(py: str, tool: str, dtypes: list[str], a) -> list[dict]:
    """scripts/bench_lm.py (its own child per measurement) for one tool; rows in this script's form."""
    cmd = [py, str(ROOT / "scripts" / "bench_lm.py"), "--configs", "small", "--dtypes", ",".join(dtypes),
           "--impls", tool, "--steps", str(a.lm_steps), "--warmup", str(a.lm_warmup), "--threads", str(a.threads)]
    r = subprocess.run(cmd, check=False, capture_output=True, text=True, env=child_env(), cwd=ROOT)
    got = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    rows = []
    for dtype in dtypes:
        m = next((g for g in got if g.get("dtype", "").split()[0] == dtype), None)
        row = {"tool": tool, "measurement": f"lm_step_{dtype}"}
        if m is None or "error" in m:
            err = (m or {}).get("error") or r.stderr.strip().splitlines()[-1:] or ["no output"]
            rows.append({**row, "error": err[-1] if isinstance(err, list) else err})
            continue
        rows.append({**row, "seconds": m["median_step_seconds"], "rate": m["tokens_per_second"],
                     "unit": "tokens/s", "dtype": m["dtype"], "config": "small", "batch": m["batch"],
                     "seq_len": m["seq_len"], "steps": m["steps"], "warmup": m["warmup"],
                     "vocab": m["vocab_size"], "params_m": m["params_m"], "final_loss": m["final_loss"],
                     "threads": m["threads"], "peak_rss_mb": m["peak_rss_mb"]})
    return rows


def merge_rounds(rows: list[dict]) -> dict:
    """One measurement's rows over ``--lm-rounds``: seconds the median, rate from it, the largest
    peak RSS, each round's seconds kept; a round that failed makes the row that error."""
    bad = next((r for r in rows if "error" in r), None)
    if bad is not None or len(rows) == 1:
        return bad or rows[0]
    secs = [r["seconds"] for r in rows]
    med = statistics.median(secs)
    return {**rows[0], "seconds": round(med, 4), "rate": round(rows[0]["batch"] * rows[0]["seq_len"] / med, 1),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in rows), "rounds": len(rows), "round_seconds": secs}


def measure_all(a, tools: dict, infos: dict, emit) -> list[dict]:
    """Every selected measurement for every tool in `tools` ({tool: python}); emit(row) as each ends."""
    rows = []

    def add(row):
        rows.append(row)
        emit(row)
    base = {"threads": a.threads, "repeat": a.repeat, "articles": a.articles, "bs": a.bs,
            "n_docs": a.n_docs, "train_docs": a.train_docs}
    if "tokenize" in a.only:
        for m in ("tokenize", "tokenize+vocab"):
            for tool, py in tools.items():
                add(run_child(py, {**base, "part": "tokenize", "tool": tool, "measurement": m}))
    if "lm" in a.only:
        bf16 = cpu_info()["avx512_bf16"] or cpu_info()["amx_bf16"]
        if not bf16:
            emit({"note": "lm_step_bf16 not measured: this CPU has neither avx512_bf16 nor amx_bf16"})
        dtypes = ["fp32", "bf16"] if bf16 else ["fp32"]
        # rounds in ABBA order, each tool's figure the median over them: a shared VM's speed drifts
        # over minutes, which one back-to-back pair of measurements reads as a ratio
        per = {tool: [] for tool in tools}
        for k in range(max(1, a.lm_rounds)):
            for tool in (list(tools) if k % 2 == 0 else list(tools)[::-1]):
                per[tool].append(lm_rows(tools[tool], tool, dtypes, a))
        got = {tool: [merge_rounds([rs[i] for rs in per[tool]]) for i in range(len(dtypes))] for tool in tools}
        for i, _ in enumerate(dtypes):
            for tool in tools:
                add(got[tool][i])
        default = {"ulmfit": infos["ulmfit"].get("default_precision", "fp32"), "fastai": "fp32"}
        for tool in tools:
            src = next((r for r in got[tool] if r["measurement"] == f"lm_step_{default[tool]}"), None)
            if src is None:
                add({"tool": tool, "measurement": "lm_step_default", "error": f"{default[tool]} not measured"})
            else:
                add({**src, "measurement": "lm_step_default", "precision": default[tool], "from": src["measurement"]})
    if "predict" in a.only:  # ulmfit at fp32 and at its default (int8 LSTMs on the CPU); fastai fp32
        for tool, py in tools.items():
            if tool == "ulmfit":
                add(run_child(py, {**base, "part": "predict", "tool": tool, "measurement": "predict_fp32",
                                   "precision": "fp32"}))
                add(run_child(py, {**base, "part": "predict", "tool": tool, "measurement": "predict",
                                   "precision": "auto"}))
            else:
                row = run_child(py, {**base, "part": "predict", "tool": tool, "measurement": "predict"})
                add({**row, "measurement": "predict_fp32"})
                add(row)
    return rows


def summarize(rows: list[dict], fastai_on: bool, infos: dict, cpu: dict) -> dict:
    by = {(r["tool"], r["measurement"]): r for r in rows}
    speedup = {}
    for m in dict.fromkeys(r["measurement"] for r in rows):
        ours, theirs = by.get(("ulmfit", m), {}), by.get(("fastai", m), {})
        if fastai_on and ours.get("seconds") and theirs.get("seconds"):
            speedup[m] = round(theirs["seconds"] / ours["seconds"], 2)
    return {"summary": True, "speedup_ulmfit_over_fastai": speedup if fastai_on else None,
            "cpu_model": cpu["cpu_model"], "nproc": cpu["nproc"], "cpu_flags": cpu["cpu_flags"],
            "torch_ulmfit": infos["ulmfit"].get("torch"), "fastai": infos.get("fastai", {}).get("fastai"),
            "torch_fastai": infos.get("fastai", {}).get("torch"),
            "ulmfit_default_precision": infos["ulmfit"].get("default_precision"),
            "ulmfit_predict_precision": infos["ulmfit"].get("predict_precision"),
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


def cell(r: dict | None) -> str:
    if not r:
        return "-"
    if "error" in r:
        return "error"
    rate = f"{r['rate']:,.0f}" if r["rate"] >= 100 else f"{r['rate']:,.2f}"
    return f"{rate} {r['unit']} ({r['seconds']:g} s)"


def rss_cell(r: dict | None) -> str:
    if not r or "peak_rss_mb" not in r:
        return "-"
    w = r.get("workers_peak_rss_mb")
    return f"{r['peak_rss_mb']:,.0f}" + (f" (+{w:,.0f})" if w else "")


def table(rows: list[dict], summary: dict, argv: list[str]) -> str:
    fa, speedup = summary["fastai"], summary["speedup_ulmfit_over_fastai"] or {}
    by = {(r["tool"], r["measurement"]): r for r in rows}
    bf16 = ", ".join(f for f in summary["cpu_flags"] if "bf16" in f) or "none"
    torch_v = f"torch {summary['torch_ulmfit']} (ulmfit)" + (f", {summary['torch_fastai']} (fastai)" if fa else "")
    head = [f"ulmfit vs fastai {fa}, one run, same documents" if fa else "ulmfit alone (fastai not installed)", "",
            f"- CPU: {summary['cpu_model']}, nproc {summary['nproc']}; bf16 instructions: {bf16}",
            f"- {torch_v}; ulmfit's default precision here: {summary['ulmfit_default_precision']} to train, "
            f"{summary['ulmfit_predict_precision']} to predict",
            f"- {summary['date']}; `python scripts/bench_vs_fastai.py {' '.join(argv)}`", ""]
    cols = ["measurement", "ulmfit"] + ([f"fastai {fa}", "ulmfit / fastai"] if fa else [])
    cols.append("peak RSS MB" + (" ulmfit / fastai" if fa else ""))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for m in dict.fromkeys(r["measurement"] for r in rows):
        ours, theirs = by.get(("ulmfit", m)), by.get(("fastai", m))
        pair = (ours, theirs) if fa else (ours,)
        what = WHAT.get(m, m)
        if m == "lm_step_default":
            what += " (" + ", ".join(f"{t} {(r or {}).get('precision', '?')}" for t, r in zip(TOOLS, pair)) + ")"
        row = [what, cell(ours)]
        if fa:
            row += [cell(theirs), f"{speedup[m]}x" if m in speedup else "-"]
        lines.append("| " + " | ".join(row + [" / ".join(rss_cell(r) for r in pair)]) + " |")
    foot = ["", ("Ratio: fastai seconds / ulmfit seconds for the same work. Peak RSS: the measuring process "
                 "(+ its largest forked worker, pages shared with the parent included).")]
    return "\n".join(head + lines + foot) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--python", default=sys.executable, help="interpreter for ulmfit's measurements")
    ap.add_argument("--fastai-python", default=sys.executable, help="interpreter for fastai's measurements")
    ap.add_argument("--only", default="tokenize,lm,predict", help="parts: tokenize, lm, predict")
    ap.add_argument("--repeat", type=int, default=3, help="tokenization runs (median)")
    ap.add_argument("--articles", type=int, default=0, help="first N WikiText-2 train articles (0: all)")
    ap.add_argument("--lm-steps", type=int, default=20)
    ap.add_argument("--lm-warmup", type=int, default=3)
    ap.add_argument("--lm-rounds", type=int, default=3,
                    help="LM step: measure each tool this many times, alternating (ABBA); report the median")
    ap.add_argument("--n-docs", type=int, default=2000, help="IMDb test reviews to predict")
    ap.add_argument("--train-docs", type=int, default=5000, help="IMDb train reviews for the vocabulary")
    ap.add_argument("--threads", type=int, default=2, help="torch threads; fastai's tokenizer workers")
    ap.add_argument("--bs", type=int, default=64)
    ap.add_argument("--table", help="write the markdown table here (default: stdout)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child_main(json.loads(a.child))
    a.only = set(a.only.split(","))
    if a.only - {"tokenize", "lm", "predict"}:
        ap.error(f"--only: unknown part(s) {sorted(a.only - {'tokenize', 'lm', 'predict'})}")
    infos = {"ulmfit": run_child(a.python, {"part": "info", "tool": "ulmfit"})}
    fa_info = run_child(a.fastai_python, {"part": "info", "tool": "fastai"})
    tools = {"ulmfit": a.python}
    if fa_info.get("fastai"):
        infos["fastai"], tools["fastai"] = fa_info, a.fastai_python
    else:
        print(json.dumps({"fastai": "not installed", "python": a.fastai_python,
                          "note": "fastai cannot be imported there: measuring ulmfit alone, no ratios"}), flush=True)
    rows = measure_all(a, tools, infos, lambda r: print(json.dumps(r), flush=True))
    summary = summarize(rows, "fastai" in tools, infos, cpu_info())
    print(json.dumps(summary), flush=True)
    text = table(rows, summary, sys.argv[1:])
    if a.table:
        Path(a.table).write_text(text, encoding="utf-8")
    else:
        print(text)


if __name__ == "__main__":
    main()
