"""``ulmfit export``: a run's AWD-LSTM as a folder transformers can load, and ``ulmfit push``.

``export_run(run_dir, out_dir)`` writes the Hub's transformers layout::

    config.json              UlmfitConfig (model_type "ulmfit", auto_map, id2label/label2id)
    model.safetensors        weights, keys prefixed "classifier." / "lm." (tied decoder stored once)
    tokenizer.json           the Rust word tokenizer
    tokenizer_config.json    ulmfit's rule settings + transformers' auto_map for the tokenizer
    configuration_ulmfit.py  \\
    modeling_ulmfit.py        > trust_remote_code files, generated from ulmfit's modules (code.py)
    tokenization_ulmfit.py   /
    README.md                model card (card.py)
    config.yaml, metrics.json  the run's own config and metrics (ulmfit evaluate reads config.yaml)
    model.onnx               with onnx=True, classifiers only (onnx.py)

ulmfit reads the folder back through ``ulmfit.text.awd_lstm.hub_format`` (no unpickling).
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
from ulmfit.hub.card import model_card
from ulmfit.hub.code import CODE_FILES, generate_code
from ulmfit.phases.backends import backend_of
from ulmfit.phases.runs import check_out_dir, find_model
from ulmfit.text.awd_lstm.hub_format import CONFIG, MODEL_TYPE, PREFIX, TASK_CLAS, TASK_LM, WEIGHTS
from ulmfit.text.awd_lstm.lm_io import load_lm
from ulmfit.text.awd_lstm.text_classifier import TextClassifier
from ulmfit.text.tokenize.tokenizer import TextTokenizer

ONNX = "model.onnx"
_TOKENIZER_MAP = ["tokenization_ulmfit.UlmfitTokenizer", None]


def _classifier(src: Path):
    """(model, tokenizer, AWD-LSTM config, config.json fields, auto_map) of a classifier folder."""
    clf = TextClassifier.load(src)
    if clf.backwards:
        raise UlmfitError(f"{src} is a backward classifier; export its forward twin (the Hub code reads "
                          "texts forwards only)")
    model = clf.model
    cfg = {"task": TASK_CLAS, "bptt": model.bptt, "max_len": model.max_len, "max_tokens": model.max_tokens,
           "head_hidden": model.head.layers[2].out_features,
           "head_ps": [model.head.layers[1].p, model.head.layers[5].p],
           "multi_label": clf.multi_label, "threshold": clf.threshold,
           "id2label": {str(i): c for i, c in enumerate(clf.classes)},
           "label2id": {c: i for i, c in enumerate(clf.classes)},
           "problem_type": "multi_label_classification" if clf.multi_label else "single_label_classification",
           "architectures": ["UlmfitForSequenceClassification"]}
    auto = {"AutoModelForSequenceClassification": "modeling_ulmfit.UlmfitForSequenceClassification"}
    return model, clf.tokenizer, model.config, cfg, auto


def _language_model(src: Path):
    model, awd = load_lm(src)
    cfg = {"task": TASK_LM, "architectures": ["UlmfitForCausalLM"], "tie_word_embeddings": True}
    auto = {"AutoModelForCausalLM": "modeling_ulmfit.UlmfitForCausalLM", "AutoModel": "modeling_ulmfit.UlmfitForCausalLM"}
    return model, TextTokenizer.load(src), awd, cfg, auto


def export_run(run_dir, out_dir, onnx: bool = False) -> dict:
    """Export the run's classifier (or, without one, its LM) to ``out_dir``; returns a summary."""
    info = find_model(run_dir).verify()
    src, out = info.path, Path(out_dir)
    if not backend_of(info).exportable or info.exported or info.kind == "ensemble":
        raise UlmfitError(f"{src} is a {info.backend} {info.kind} {'export' if info.exported else 'run'}; "
                          "`ulmfit export` writes AWD-LSTM classifier and LM runs (a transformers run's model/ "
                          "folder is already a transformers folder)")
    if out.resolve() == src.resolve():
        raise UlmfitError(f"--out {out} is the run folder itself; choose a new folder")
    if onnx and info.kind != "classifier":
        raise UlmfitError("--onnx exports classifiers only; this run's model is a language model")
    check_out_dir(out, "--out folder")
    model, tokenizer, awd, cfg, auto_model = (_classifier if info.kind == "classifier" else _language_model)(src)
    task = cfg["task"]
    config = {"model_type": MODEL_TYPE, "awd_lstm": awd.to_dict(), **cfg,
              "vocab_size": awd.vocab_size, "pad_token_id": tokenizer.pad_id, "bos_token_id": tokenizer.bos_id,
              "eos_token_id": tokenizer.eos_id, "torch_dtype": "float32", "ulmfit_version": __version__,
              "auto_map": {"AutoConfig": "configuration_ulmfit.UlmfitConfig", **auto_model,
                           "AutoTokenizer": _TOKENIZER_MAP}}
    atomic_write_text(out / CONFIG, json.dumps(config, indent=2) + "\n")
    _save_weights(model, out / WEIGHTS, PREFIX[task])
    _save_tokenizer(tokenizer, out)
    for name, code in generate_code(__version__).items():
        atomic_write_text(out / name, code)
    for name in ("config.yaml", "metrics.json"):
        if (src / name).is_file():
            shutil.copyfile(src / name, out / name)
    (out / ONNX).unlink(missing_ok=True)
    if onnx:
        from ulmfit.hub.onnx import export_onnx  # needs the onnx extra

        export_onnx(model, out / ONNX, multi_label=cfg["multi_label"])
    atomic_write_text(out / "README.md", model_card(src, config))
    files = sorted(p.name for p in out.iterdir() if p.is_file())
    return {"out": str(out), "task": task, "source": str(src), "files": files, "onnx": onnx}


export_to_hub = export_run


def _save_tokenizer(tokenizer, out: Path) -> None:
    """tokenizer.json + ulmfit's tokenizer_config.json, extended with what transformers reads."""
    tokenizer.save(out)
    tok_cfg = json.loads((out / "tokenizer_config.json").read_text(encoding="utf-8"))
    tok_cfg.update({"tokenizer_class": "UlmfitTokenizer", "auto_map": {"AutoTokenizer": _TOKENIZER_MAP},
                    "unk_token": "xxunk", "pad_token": "xxpad", "bos_token": "xxbos", "eos_token": "xxeos",
                    "model_max_length": 1_000_000, "padding_side": "right"})
    atomic_write_text(out / "tokenizer_config.json", json.dumps(tok_cfg, indent=2) + "\n")


def _save_weights(model: torch.nn.Module, path: Path, prefix: str) -> None:
    from safetensors.torch import save_file

    state = {prefix + k: v for k, v in weights_state(model).items()}  # an LM's tied decoder stored once
    meta = {"format": "pt", "ulmfit_version": __version__}
    atomic_write(path, lambda tmp: save_file(state, tmp, metadata=meta))


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
