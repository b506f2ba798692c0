"""The model card (README.md) of an exported folder: Hub metadata, the recipe each phase ran with,
its results, intended use and how to load it. The metadata goes through huggingface_hub's
``ModelCardData``, so the YAML header is what the Hub expects."""

from __future__ import annotations

import re
from pathlib import Path

from huggingface_hub import EvalResult, ModelCardData

from ulmfit import __version__
from ulmfit.phases.runs import RunInfo, lineage
from ulmfit.text.awd_lstm.hub_format import TASK_CLAS

_PHASE_TITLE = {"pretrain": "1. Language-model pretraining", "finetune_lm": "2. LM fine-tuning on the target domain",
                "classifier": "3. Classifier training"}


def _dataset_name(path) -> str | None:
    if not path:
        return None
    p = Path(str(path))
    return p.parent.name if p.suffix else p.name


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _results(task: str, metrics: dict) -> list[tuple[str, str, float, str]]:
    """[(metric type, display name, value, split)] the card reports."""
    keys = ((("test_accuracy", "accuracy", "Accuracy"), ("test_macro_f1", "f1", "Macro F1")) if task == TASK_CLAS else
            (("valid_perplexity", "perplexity", "Perplexity"), ("valid_accuracy", "accuracy", "Accuracy")))
    split = "test" if task == TASK_CLAS else "validation"
    return [(mtype, name, metrics[key], split) for key, mtype, name in keys if key in metrics]


def _metadata(src: Path, task: str, chain: list[tuple[RunInfo, dict, dict]], results) -> str:
    datasets = []
    for _, cfg, _ in chain:
        for key in ("train", "test"):
            name = _dataset_name((cfg.get("data") or {}).get(key))
            if name and name not in datasets:
                datasets.append(name)
    pipeline = "text-classification" if task == TASK_CLAS else "text-generation"
    last = (chain[-1][1].get("data") or {}) if chain else {}
    ds = (_dataset_name(last.get("test")) or "the held-out set" if task == TASK_CLAS else
          _dataset_name(last.get("valid") or last.get("train")) or "validation")
    name = Path(str(src)).resolve().parent.name + "-" + (chain[-1][0].phase or "") if chain else "ulmfit"
    evals = [EvalResult(task_type=pipeline, dataset_type=ds, dataset_name=ds, dataset_split=split,
                        metric_type=mtype, metric_value=value, metric_name=mname)
             for mtype, mname, value, split in results]
    data = ModelCardData(library_name="transformers", license="other", tags=["ulmfit", "awd-lstm", pipeline,
                         "trust-remote-code"], pipeline_tag=pipeline, datasets=datasets or None,
                         metrics=list(dict.fromkeys(r[0] for r in results)) or None,
                         model_name=name if evals else None, eval_results=evals or None)
    return "---\n" + data.to_yaml() + "\n---\n"


def _intro(task: str, config: dict) -> list[str]:
    awd = config["awd_lstm"]
    what = "text classifier" if task == TASK_CLAS else "language model"
    arch = (f"an AWD-LSTM ({awd['n_layers']} LSTM layers, embedding size {awd['emb_size']}, hidden size "
            f"{awd['n_hid']}, vocabulary {awd['vocab_size']:,} words, {'bi' if awd.get('bidir') else 'uni'}directional)")
    lines = ["", f"# ULMFiT AWD-LSTM {what}", "",
             f"A {what} trained with ulmfit {__version__} following ULMFiT "
             "(Howard & Ruder 2018, https://arxiv.org/abs/1801.06146): " + arch + ".",
             "", "License: not chosen yet (`license: other`); set one in the metadata above before publishing."]
    if task == TASK_CLAS:
        labels = list(config["id2label"].values())
        lines += ["", f"It predicts one of {len(labels)} labels"
                  + (" (multi-label, sigmoid outputs)" if config["multi_label"] else "")
                  + ": " + ", ".join(f"`{c}`" for c in labels) + ". Long texts are read with BPT3C "
                  f"(chunks of {config['bptt']} tokens, pooling over the last {config['max_len']} tokens) and a "
                  "concat-pooling head ([last, max, mean] -> BatchNorm/dropout/Linear)."]
    return lines


def _phase_rows(info: RunInfo, cfg: dict) -> list[tuple[str, object]]:
    data, tk, mod, tr = (cfg.get(k) or {} for k in ("data", "tokenizer", "model", "train"))
    valid = data.get("valid") or (f"{data.get('valid_pct')} of the training data" if data.get("valid_pct") else None)
    rows = [("training data", data.get("train")), ("validation data", valid),
            ("test data", data.get("test")), ("max items", data.get("max_items")),
            ("tokenizer", f"{tk.get('kind')} (min_freq {tk.get('min_freq')}, max_vocab {tk.get('max_vocab')})" if tk else None),
            ("model", f"{mod.get('type', 'awd_lstm')} {mod.get('arch') or ''}".strip() if mod else None),
            ("drop_mult", mod.get("drop_mult")), ("backwards", mod.get("backwards") or None),
            ("strategy", tr.get("strategy")), ("epochs", tr.get("epochs")), ("learning rate", tr.get("lr")),
            ("lr_factor (discriminative LRs)", tr.get("lr_factor")), ("schedule", tr.get("schedule")),
            ("batch size", tr.get("bs")), ("bptt", tr.get("bptt")), ("optimizer", tr.get("optimizer")),
            ("weight decay", tr.get("weight_decay")), ("max steps per epoch", tr.get("max_steps_per_epoch")),
            ("mixed precision", tr.get("mixed_precision")), ("seed", tr.get("seed"))]
    if info.phase == "classifier":
        rows += [("max_len (BPT3C)", cfg.get("max_len")), ("head hidden size", cfg.get("head_hidden"))]
    return [(k, v) for k, v in rows if v is not None and v != ""]


def _recipe(chain: list[tuple[RunInfo, dict, dict]]) -> list[str]:
    lines = ["", "## Training recipe", "",
             "The ULMFiT recipe: pretrain a language model on general text, fine-tune it on the target "
             "domain's text (discriminative learning rates, slanted triangular / one-cycle schedules), then "
             "train a classifier on top of its encoder with gradual unfreezing. The phases and hyperparameters "
             "this model was actually trained with (from each phase's saved `config.yaml`):", ""]
    for info, cfg, m in chain:
        lines += [f"### {_PHASE_TITLE.get(info.phase, info.phase)}", "", "| setting | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in _phase_rows(info, cfg)]
        shown = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not re.search(r"_(precision|recall|f1)_", k)}
        if shown:
            lines += ["", "Results of this phase: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in shown.items()) + "."]
        lines.append("")
    return lines


def _evaluation(task: str, chain, results, metrics: dict) -> list[str]:
    lines = ["## Evaluation results", ""]
    test_set = ((chain[-1][1].get("data") or {}) if chain else {}).get("test")
    if task == TASK_CLAS and results:
        lines += [f"On the test set `{test_set}` ({_dataset_name(test_set) or 'the held-out set'}):", "",
                  "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for _, name, value, _ in results]
        per_class = [(k[len("test_f1_"):], v) for k, v in metrics.items() if k.startswith("test_f1_")]
        if per_class:
            lines += ["", "Per-class F1 on the test set: " + ", ".join(f"{c} {v:.4f}" for c, v in per_class) + "."]
    elif results:
        lines += ["On the validation text:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for _, name, value, _ in results]
    else:
        lines += ["The run recorded no test metrics (no test set was given)."]
    return lines


def _usage(task: str) -> list[str]:
    lines = ["", "## Intended use and limitations", "",
              ("Classifying texts like the training data's (same language, domain and length). " if task == TASK_CLAS else
               "Scoring or continuing English text like the fine-tuning data, and as the starting point of a "
               "ULMFiT classifier (`ulmfit finetune-lm --pretrained THIS_FOLDER` or `train-classifier`). "),
              "The model only knows the words of its vocabulary (others become `xxunk`) and the label set "
              "above; it inherits the biases of its training text; check it on your own data before relying "
              "on it. The numbers above come from one run of the recipe (one seed); small runs vary.",
              "", "## How to use", "", "With transformers (the model code ships in this folder, so "
              "`trust_remote_code=True` is needed; ulmfit itself is not):", "", "```python"]
    if task == TASK_CLAS:
        lines += ["from transformers import AutoModelForSequenceClassification, AutoTokenizer, pipeline",
                  "", 'repo = "user/name"  # or a local folder',
                  "clf = pipeline(\"text-classification\", model=repo, trust_remote_code=True, top_k=None)",
                  'print(clf("How far is the moon from the earth ?"))', "",
                  "tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)",
                  "model = AutoModelForSequenceClassification.from_pretrained(repo, trust_remote_code=True).eval()",
                  'batch = tokenizer(["a first text", "a second one"], padding=True, return_tensors="pt")',
                  "probs = model(**batch).logits.softmax(-1)", "```", "", "With ulmfit:", "", "```bash",
                  "ulmfit predict THIS_FOLDER \"How far is the moon ?\"", "ulmfit evaluate THIS_FOLDER test.csv", "```"]
        lines += ["", "`model.onnx` (when present) takes `input_ids` and `attention_mask` (int64, batch x length, "
                  "any padding side) and returns `logits` and `probabilities`; encode texts with the tokenizer above."]
    else:
        lines += ["import torch", "from transformers import AutoModelForCausalLM, AutoTokenizer", "",
                  'repo = "user/name"  # or a local folder',
                  "tokenizer = AutoTokenizer.from_pretrained(repo, trust_remote_code=True)",
                  "model = AutoModelForCausalLM.from_pretrained(repo, trust_remote_code=True).eval()",
                  'ids = tokenizer("The history of", return_tensors="pt").input_ids',
                  "next_token = model(ids).logits[0, -1].argmax()", "```", "", "With ulmfit, as phase 2's "
                  "starting point: `ulmfit finetune-lm --pretrained THIS_FOLDER ...`."]
    lines += ["", "Loading never unpickles: weights are safetensors, configs JSON.", ""]
    return lines


def model_card(src: Path, config: dict) -> str:
    """README.md for the exported folder: YAML metadata, recipe, hyperparameters, results, usage."""
    chain = [(info, info.config(), info.metrics()) for info in lineage(src)]
    task = config["task"]
    metrics = chain[-1][2] if chain else {}
    results = _results(task, metrics)
    lines = (_intro(task, config) + _recipe(chain) + _evaluation(task, chain, results, metrics) + _usage(task))
    return _metadata(Path(src), task, chain, results) + "\n".join(lines)
