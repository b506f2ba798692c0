"""Hugging Face Hub export and import: a transformers-loadable folder, a model card, push.

``export_run(run_dir, out_dir)`` turns a classifier (or language-model) output folder into the
Hub's transformers layout::

    config.json              UlmfitConfig (model_type "ulmfit", auto_map, id2label/label2id)
    model.safetensors        weights, keys prefixed "classifier." / "lm." (tied decoder stored once)
    tokenizer.json           the Rust word tokenizer
    tokenizer_config.json    ulmfit's rule settings + transformers' auto_map for the tokenizer
    configuration_ulmfit.py  \\
    modeling_ulmfit.py        > trust_remote_code files, generated from ulmfit's modules (hub_code.py)
    tokenization_ulmfit.py   /
    README.md                model card: metadata, recipe, hyperparameters, results, usage
    config.yaml, metrics.json  the run's own config and metrics (ulmfit evaluate reads config.yaml)
    model.onnx               with onnx=True, classifiers only (onnx_export.py)

The same folder loads back into ulmfit (``load_exported_classifier`` / ``load_exported_lm``)
without unpickling: JSON/YAML safe loaders and safetensors, every tensor checked for name and
shape, and any mismatch is one :class:`UlmfitError` naming the file.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import torch

from ulmfit import __version__
from ulmfit.core.checkpoint import atomic_write, atomic_write_text, weights_state
from ulmfit.errors import UlmfitError
from ulmfit.hub_code import CODE_FILES, MODEL_TYPE, generate_code

__all__ = ["export_run", "export_to_hub", "push", "load_exported_classifier", "load_exported_lm",
           "is_exported", "load_classifier", "model_card"]

CONFIG, WEIGHTS, ONNX = "config.json", "model.safetensors", "model.onnx"
TASK_CLAS, TASK_LM = "text-classification", "language-modeling"
_PREFIX = {TASK_CLAS: "classifier.", TASK_LM: "lm."}
_TIED = "decoder.weight"


# ---- export ---------------------------------------------------------------------------------------
def _find_phase(run_dir: Path) -> tuple[Path, str]:
    """(phase folder, task) for a recipe run folder or a phase output folder."""
    if not run_dir.is_dir():
        raise UlmfitError(f"run folder {run_dir} does not exist")
    for d in (run_dir, run_dir / "classifier"):
        if (d / "classifier_config.json").is_file():
            return d, TASK_CLAS
    for d in (run_dir, run_dir / "finetune_lm", run_dir / "pretrain"):
        if (d / "lm_config.json").is_file():
            return d, TASK_LM
    raise UlmfitError(f"{run_dir} holds no trained model: expected a classifier folder (classifier_config.json), "
                      "an LM folder (lm_config.json) or a recipe run with classifier/ or finetune_lm/ in it")


def export_run(run_dir, out_dir, onnx: bool = False) -> dict:
    """Export the run's classifier (or, without one, its LM) to ``out_dir``; returns a summary."""
    from ulmfit.text.tokenizer import TextTokenizer

    src, task = _find_phase(Path(run_dir))
    out = Path(out_dir)
    if out.resolve() == src.resolve():
        raise UlmfitError(f"--out {out} is the run folder itself; choose a new folder")
    out.mkdir(parents=True, exist_ok=True)
    if task == TASK_CLAS:
        from ulmfit.text.text_classifier import TextClassifier

        clf = TextClassifier.load(src)
        if clf.backwards:
            raise UlmfitError(f"{src} is a backward classifier; export its forward twin (the Hub code reads "
                              "texts forwards only)")
        model, tokenizer, awd = clf.model, clf.tokenizer, clf.model.config
        cfg = {"task": task, "bptt": model.bptt, "max_len": model.max_len,
               "head_hidden": model.head.layers[2].out_features,
               "head_ps": [model.head.layers[1].p, model.head.layers[5].p],
               "multi_label": clf.multi_label, "threshold": clf.threshold,
               "id2label": {str(i): c for i, c in enumerate(clf.classes)},
               "label2id": {c: i for i, c in enumerate(clf.classes)},
               "problem_type": "multi_label_classification" if clf.multi_label else "single_label_classification",
               "architectures": ["UlmfitForSequenceClassification"]}
        auto_model = {"AutoModelForSequenceClassification": "modeling_ulmfit.UlmfitForSequenceClassification"}
    else:
        from ulmfit.text.lm_io import load_lm

        model, awd = load_lm(src)
        tokenizer = TextTokenizer.load(src)
        cfg = {"task": task, "architectures": ["UlmfitForCausalLM"], "tie_word_embeddings": True}
        auto_model = {"AutoModelForCausalLM": "modeling_ulmfit.UlmfitForCausalLM",
                      "AutoModel": "modeling_ulmfit.UlmfitForCausalLM"}
    tok_map = ["tokenization_ulmfit.UlmfitTokenizer", None]
    config = {"model_type": MODEL_TYPE, "awd_lstm": awd.to_dict(), **cfg,
              "vocab_size": awd.vocab_size, "pad_token_id": tokenizer.pad_id, "bos_token_id": tokenizer.bos_id,
              "eos_token_id": tokenizer.eos_id, "torch_dtype": "float32", "ulmfit_version": __version__,
              "auto_map": {"AutoConfig": "configuration_ulmfit.UlmfitConfig", **auto_model, "AutoTokenizer": tok_map}}
    atomic_write_text(out / CONFIG, json.dumps(config, indent=2) + "\n")
    _save_weights(model, out / WEIGHTS, _PREFIX[task])
    tokenizer.save(out)  # tokenizer.json + ulmfit's tokenizer_config.json, extended below
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_cfg.update({"tokenizer_class": "UlmfitTokenizer", "auto_map": {"AutoTokenizer": tok_map},
                    "unk_token": "xxunk", "pad_token": "xxpad", "bos_token": "xxbos", "eos_token": "xxeos",
                    "model_max_length": 1_000_000, "padding_side": "right"})
    atomic_write_text(out / "tokenizer_config.json", json.dumps(tok_cfg, indent=2) + "\n")
    for name, code in generate_code(__version__).items():
        atomic_write_text(out / name, code)
    for name in ("config.yaml", "metrics.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    (out / ONNX).unlink(missing_ok=True)
    if onnx:
        if task != TASK_CLAS:
            raise UlmfitError("--onnx exports classifiers only; this run's model is a language model")
        from ulmfit.onnx_export import export_onnx

        export_onnx(model, out / ONNX, multi_label=clf.multi_label)
    atomic_write_text(out / "README.md", model_card(src, config))
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    return {"out": str(out), "task": task, "source": str(src), "files": files, "onnx": onnx}


export_to_hub = export_run


def _save_weights(model: torch.nn.Module, path: Path, prefix: str) -> None:
    from safetensors.torch import save_file

    state = {prefix + k: v for k, v in weights_state(model).items()}  # an LM's tied decoder stored once
    meta = {"format": "pt", "ulmfit_version": __version__}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


# ---- model card -----------------------------------------------------------------------------------
def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UlmfitError(f"{path} is not valid YAML: {e}") from None


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UlmfitError(f"{path} is not valid JSON: {e}") from None


def _lineage(src: Path) -> list[tuple[str, Path, dict, dict]]:
    """[(phase, folder, config, metrics)] from pretraining to ``src``, as far as the folders exist."""
    chain, d, seen = [], src, set()
    while d is not None and d.is_dir() and d.resolve() not in seen:
        seen.add(d.resolve())
        cfg = _read_yaml(d / "config.yaml")
        phase = ("classifier" if (d / "classifier_config.json").is_file() else
                 "finetune_lm" if "pretrained" in cfg else "pretrain")
        chain.append((phase, d, cfg, _read_json(d / "metrics.json")))
        nxt = cfg.get("encoder") if phase == "classifier" else cfg.get("pretrained") if phase == "finetune_lm" else None
        sibling = d.parent / ("finetune_lm" if phase == "classifier" else "pretrain")
        d = Path(nxt) if nxt and Path(nxt).is_dir() else (sibling if nxt and sibling.is_dir() else None)
    return chain[::-1]


def _dataset_name(path) -> str | None:
    if not path:
        return None
    p = Path(str(path))
    return p.parent.name if p.suffix else p.name


def _fmt(v) -> str:
    return f"{v:.4f}" if isinstance(v, float) else str(v)


def _yaml_str(s: str) -> str:
    return json.dumps(str(s))  # a JSON string is a valid YAML scalar


_PHASE_TITLE = {"pretrain": "1. Language-model pretraining", "finetune_lm": "2. LM fine-tuning on the target domain",
                "classifier": "3. Classifier training"}


def model_card(src: Path, config: dict) -> str:
    """README.md for the exported folder: YAML metadata, recipe, hyperparameters, results, usage."""
    chain = _lineage(Path(src))
    task = config["task"]
    last_cfg, metrics = (chain[-1][2], chain[-1][3]) if chain else ({}, {})
    datasets = []
    for _, _, cfg, _ in chain:
        data = cfg.get("data") or {}
        for key in ("train", "test"):
            name = _dataset_name(data.get(key))
            if name and name not in datasets:
                datasets.append(name)
    test_set = (last_cfg.get("data") or {}).get("test")
    test_name = _dataset_name(test_set) or "the held-out set"
    awd = config["awd_lstm"]
    front = ["---", "library_name: transformers", "license: other  # TODO: choose a license, e.g. apache-2.0",
             "tags:", "  - ulmfit", "  - awd-lstm", "  - text-classification" if task == TASK_CLAS else "  - text-generation",
             "  - trust-remote-code", "pipeline_tag: " + ("text-classification" if task == TASK_CLAS else "text-generation")]
    front += ["datasets:"] + [f"  - {_yaml_str(n)}" for n in datasets] if datasets else []
    results = []
    if task == TASK_CLAS:
        for key, mtype, name in (("test_accuracy", "accuracy", "Accuracy"), ("test_macro_f1", "f1", "Macro F1")):
            if key in metrics:
                results.append((mtype, name, metrics[key], "test"))
    else:
        for key, mtype, name in (("valid_perplexity", "perplexity", "Perplexity"), ("valid_accuracy", "accuracy", "Accuracy")):
            if key in metrics:
                results.append((mtype, name, metrics[key], "validation"))
    if results:
        front += ["metrics:"] + [f"  - {m}" for m in dict.fromkeys(r[0] for r in results)]
        ds = test_name if task == TASK_CLAS else _dataset_name((last_cfg.get("data") or {}).get("valid")
                                                               or (last_cfg.get("data") or {}).get("train")) or "validation"
        front += ["model-index:", f"  - name: {_yaml_str(Path(str(src)).resolve().parent.name + '-' + chain[-1][0] if chain else 'ulmfit')}",
                  "    results:", "      - task:", f"          type: {'text-classification' if task == TASK_CLAS else 'text-generation'}",
                  "        dataset:", f"          name: {_yaml_str(ds)}", f"          type: {_yaml_str(ds)}",
                  f"          split: {results[0][3]}", "        metrics:"]
        for mtype, name, value, _ in results:
            front += [f"          - type: {mtype}", f"            value: {value!r}", f"            name: {_yaml_str(name)}"]
    front.append("---")

    what = "text classifier" if task == TASK_CLAS else "language model"
    arch = (f"an AWD-LSTM ({awd['n_layers']} LSTM layers, embedding size {awd['emb_size']}, hidden size "
            f"{awd['n_hid']}, vocabulary {awd['vocab_size']:,} words, {'bi' if awd.get('bidir') else 'uni'}directional)")
    lines = ["", f"# ULMFiT AWD-LSTM {what}", "",
             f"A {what} trained with ulmfit {__version__} following ULMFiT "
             "(Howard & Ruder 2018, https://arxiv.org/abs/1801.06146): " + arch + "."]
    if task == TASK_CLAS:
        labels = list(config["id2label"].values())
        lines += ["", f"It predicts one of {len(labels)} labels" + (" (multi-label, sigmoid outputs)" if config["multi_label"] else "")
                  + ": " + ", ".join(f"`{c}`" for c in labels) + ". Long texts are read with BPT3C "
                  f"(chunks of {config['bptt']} tokens, pooling over the last {config['max_len']} tokens) and a "
                  "concat-pooling head ([last, max, mean] -> BatchNorm/dropout/Linear).",]
    lines += ["", "## Training recipe", "",
              "The ULMFiT recipe: pretrain a language model on general text, fine-tune it on the target "
              "domain's text (discriminative learning rates, slanted triangular / one-cycle schedules), then "
              "train a classifier on top of its encoder with gradual unfreezing. The phases and hyperparameters "
              "this model was actually trained with (from each phase's saved `config.yaml`):", ""]
    for phase, _, cfg, m in chain:
        data, tk, mod, tr = (cfg.get(k) or {} for k in ("data", "tokenizer", "model", "train"))
        lines += [f"### {_PHASE_TITLE.get(phase, phase)}", "", "| setting | value |", "|---|---|"]
        rows = [("training data", data.get("train")), ("validation data", data.get("valid") or (f"{data.get('valid_pct')} of the training data" if data.get("valid_pct") else None)),
                ("test data", data.get("test")), ("max items", data.get("max_items")),
                ("tokenizer", f"{tk.get('kind')} (min_freq {tk.get('min_freq')}, max_vocab {tk.get('max_vocab')})" if tk else None),
                ("model", f"{mod.get('type', 'awd_lstm')} {mod.get('arch') or ''}".strip() if mod else None),
                ("drop_mult", mod.get("drop_mult")), ("backwards", mod.get("backwards") or None),
                ("strategy", tr.get("strategy")), ("epochs", tr.get("epochs")), ("learning rate", tr.get("lr")),
                ("lr_factor (discriminative LRs)", tr.get("lr_factor")), ("schedule", tr.get("schedule")),
                ("batch size", tr.get("bs")), ("bptt", tr.get("bptt")), ("optimizer", tr.get("optimizer")),
                ("weight decay", tr.get("weight_decay")), ("max steps per epoch", tr.get("max_steps_per_epoch")),
                ("mixed precision", tr.get("mixed_precision")), ("seed", tr.get("seed"))]
        if phase == "classifier":
            rows += [("max_len (BPT3C)", cfg.get("max_len")), ("head hidden size", cfg.get("head_hidden"))]
        lines += [f"| {k} | {v} |" for k, v in rows if v is not None and v != ""]
        shown = {k: v for k, v in m.items() if isinstance(v, (int, float)) and not re.search(r"_(precision|recall|f1)_", k)}
        if shown:
            lines += ["", "Results of this phase: " + ", ".join(f"{k} = {_fmt(v)}" for k, v in shown.items()) + "."]
        lines.append("")
    lines += ["## Evaluation results", ""]
    if task == TASK_CLAS and results:
        lines += [f"On the test set `{test_set}` ({test_name}):", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for _, name, value, _ in results]
        per_class = [(k[len("test_f1_"):], v) for k, v in metrics.items() if k.startswith("test_f1_")]
        if per_class:
            lines += ["", "Per-class F1 on the test set: " + ", ".join(f"{c} {v:.4f}" for c, v in per_class) + "."]
    elif results:
        lines += ["On the validation text:", "", "| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for _, name, value, _ in results]
    else:
        lines += ["The run recorded no test metrics (no test set was given)."]
    lines += ["", "## Intended use and limitations", "",
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
    return "\n".join(front + lines)


# ---- import ---------------------------------------------------------------------------------------
def is_exported(folder) -> bool:
    """True when ``folder`` has a config.json (i.e. looks like an exported / Hub folder)."""
    return (Path(folder) / CONFIG).is_file()


def _read_export(folder, task: str) -> tuple[Path, dict]:
    d = Path(folder)
    if not d.is_dir():
        raise UlmfitError(f"model folder {d} does not exist")
    for name in (CONFIG, WEIGHTS, "tokenizer.json", "tokenizer_config.json"):
        if not (d / name).is_file():
            raise UlmfitError(f"{d / name} is missing: {d} is not a complete ulmfit export")
    cfg = _read_json(d / CONFIG)
    if not isinstance(cfg, dict) or cfg.get("model_type") != MODEL_TYPE:
        got = cfg.get("model_type") if isinstance(cfg, dict) else type(cfg).__name__
        raise UlmfitError(f"{d / CONFIG}: model_type is {got!r}, expected {MODEL_TYPE!r} (an ulmfit AWD-LSTM export)")
    if cfg.get("task") != task:
        raise UlmfitError(f"{d / CONFIG}: this export is a {cfg.get('task')!r} model, not a {task!r} one")
    if not isinstance(cfg.get("awd_lstm"), dict):
        raise UlmfitError(f"{d / CONFIG}: the 'awd_lstm' settings are missing")
    return d, cfg


def _load_checked(model: torch.nn.Module, path: Path, prefix: str) -> None:
    """Load safetensors ``path`` into ``model``: every tensor present, named and shaped as expected."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        raw = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as e:
        raise UlmfitError(f"{path} is not a readable safetensors file: {e}") from None
    expected = {k: v for k, v in model.state_dict().items() if not (prefix == "lm." and k == _TIED)}
    state = {}
    for k, v in raw.items():
        if not k.startswith(prefix) or k[len(prefix):] not in expected:
            raise UlmfitError(f"{path}: unexpected tensor {k!r}; the file does not belong to this config.json")
        state[k[len(prefix):]] = v
    missing = [prefix + k for k in expected if k not in state]
    if missing:
        raise UlmfitError(f"{path}: missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape) or v.dtype != expected[k].dtype:
            raise UlmfitError(f"{path}: tensor {prefix + k!r} is {tuple(v.shape)} {v.dtype}, the config.json model "
                              f"needs {tuple(expected[k].shape)} {expected[k].dtype}")
    model.load_state_dict(state, strict=False)


def _config_and_tokenizer(d: Path, cfg: dict):
    from ulmfit.text.awd_lstm import AWDLSTMConfig
    from ulmfit.text.tokenizer import TextTokenizer

    try:
        awd = AWDLSTMConfig.from_dict(cfg["awd_lstm"])
    except (TypeError, ValueError) as e:
        raise UlmfitError(f"{d / CONFIG}: bad 'awd_lstm' settings: {e}") from None
    tok = TextTokenizer.load(d)
    if len(tok) != awd.vocab_size:
        raise UlmfitError(f"{d / 'tokenizer.json'} has {len(tok)} words but {d / CONFIG} says vocab_size="
                          f"{awd.vocab_size}; the tokenizer does not belong to these weights")
    return awd, tok


def load_exported_classifier(folder, device: str | None = None):
    """An exported classifier folder (or a Hub snapshot of one) as a :class:`TextClassifier`."""
    from ulmfit.text.classifier import AWDLSTMClassifier
    from ulmfit.text.text_classifier import TextClassifier

    d, cfg = _read_export(folder, TASK_CLAS)
    awd, tok = _config_and_tokenizer(d, cfg)
    id2label = cfg.get("id2label") or {}
    try:
        classes = [id2label[str(i)] for i in range(len(id2label))]
        model = AWDLSTMClassifier(awd, len(classes), int(cfg["bptt"]), int(cfg["max_len"]), int(cfg["head_hidden"]),
                                  tuple(cfg["head_ps"]) if cfg.get("head_ps") else None)
    except (KeyError, TypeError, ValueError) as e:
        raise UlmfitError(f"{d / CONFIG}: incomplete classifier settings ({type(e).__name__}: {e})") from None
    if not classes:
        raise UlmfitError(f"{d / CONFIG}: id2label is empty")
    _load_checked(model, d / WEIGHTS, _PREFIX[TASK_CLAS])
    model.eval()
    if device:
        model.to(device)
    return TextClassifier(model, tok, classes, bool(cfg.get("multi_label", False)), float(cfg.get("threshold", 0.5)))


def load_exported_lm(folder, **config_overrides):
    """An exported LM folder as ``(AWDLSTMLanguageModel, TextTokenizer)`` (e.g. phase 2's start).
    ``config_overrides`` change dropouts (e.g. ``drop_mult=0.5``)."""
    from ulmfit.text.awd_lstm import AWDLSTMConfig, AWDLSTMLanguageModel

    d, cfg = _read_export(folder, TASK_LM)
    awd, tok = _config_and_tokenizer(d, cfg)
    if config_overrides:
        awd = AWDLSTMConfig.from_dict({**awd.to_dict(), **config_overrides})
    model = AWDLSTMLanguageModel(awd)
    _load_checked(model, d / WEIGHTS, _PREFIX[TASK_LM])
    return model, tok


def load_classifier(folder, device: str | None = None):
    """Any classifier folder (train-classifier output, transformers run, or an export)."""
    from ulmfit.text.text_classifier import load_classifier as load_any

    clf = load_any(folder)
    if device:
        clf.model.to(device)
    return clf


# ---- push -----------------------------------------------------------------------------------------
_REPO = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def push(hub_dir, repo: str, token: str | None = None, private: bool = False,
         commit_message: str = "Upload ulmfit model") -> str:
    """Upload an exported folder to the Hub repo ``user/name`` (created if needed); returns its URL.
    The token comes from ``token``, else ``HF_TOKEN`` or ``huggingface-cli login``."""
    d = Path(hub_dir)
    for name in (CONFIG, WEIGHTS, "README.md", *CODE_FILES):
        if not (d / name).is_file():
            raise UlmfitError(f"{d / name} is missing: push a folder written by `ulmfit export`")
    if not _REPO.match(repo):
        raise UlmfitError(f"--repo must look like user/name, got {repo!r}")
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id=repo, private=private, exist_ok=True, repo_type="model")
    info = api.upload_folder(folder_path=str(d), repo_id=repo, repo_type="model", commit_message=commit_message)
    return str(getattr(info, "commit_url", None) or f"https://huggingface.co/{repo}")
