"""The exported (Hugging Face Hub) folder of an AWD-LSTM, read back without unpickling.

``ulmfit export`` (ulmfit.hub) writes ``config.json`` (model_type "ulmfit", the AWD-LSTM settings,
the task), ``model.safetensors`` (keys prefixed "classifier." or "lm.", the tied decoder stored
once) and the tokenizer. This module owns that format's names and reads such a folder back as a
:class:`TextClassifier` or an LM: JSON and safetensors only, every tensor checked for name and
shape, and any mismatch is one :class:`UlmfitError` naming the file.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm.classifier import AWDLSTMClassifier, check_head_settings
from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel
from ulmfit.text.awd_lstm.text_classifier import TextClassifier
from ulmfit.text.tokenize.tokenizer import TextTokenizer

MODEL_TYPE = "ulmfit"
CONFIG, WEIGHTS = "config.json", "model.safetensors"
TASK_CLAS, TASK_LM = "text-classification", "language-modeling"
PREFIX = {TASK_CLAS: "classifier.", TASK_LM: "lm."}
TIED = "decoder.weight"


def read_json(path: Path) -> dict:
    """A JSON file as a dict ({} when absent); invalid JSON is a UlmfitError naming the file."""
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UlmfitError(f"{path} is not valid JSON: {e}") from None


def is_exported(folder) -> bool:
    """True when ``folder`` has a config.json (i.e. looks like an exported / Hub folder)."""
    return (Path(folder) / CONFIG).is_file()


def read_export(folder, task: str) -> tuple[Path, dict]:
    d = Path(folder)
    if not d.is_dir():
        raise UlmfitError(f"model folder {d} does not exist")
    for name in (CONFIG, WEIGHTS, "tokenizer.json", "tokenizer_config.json"):
        if not (d / name).is_file():
            raise UlmfitError(f"{d / name} is missing: {d} is not a complete ulmfit export")
    cfg = read_json(d / CONFIG)
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
    expected = {k: v for k, v in model.state_dict().items() if not (prefix == "lm." and k == TIED)}
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


def config_and_tokenizer(d: Path, cfg: dict):
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
    d, cfg = read_export(folder, TASK_CLAS)
    awd, tok = config_and_tokenizer(d, cfg)
    id2label = cfg.get("id2label") or {}
    check_head_settings(cfg, d / CONFIG)
    try:
        classes = [id2label[str(i)] for i in range(len(id2label))]
        model = AWDLSTMClassifier(awd, len(classes), int(cfg["bptt"]), int(cfg["max_len"]), int(cfg["head_hidden"]),
                                  tuple(cfg["head_ps"]) if cfg.get("head_ps") else None, cfg.get("max_tokens"))
    except (KeyError, TypeError, ValueError) as e:
        raise UlmfitError(f"{d / CONFIG}: incomplete classifier settings ({type(e).__name__}: {e})") from None
    if not classes:
        raise UlmfitError(f"{d / CONFIG}: id2label is empty")
    _load_checked(model, d / WEIGHTS, PREFIX[TASK_CLAS])
    model.eval()
    if device:
        model.to(device)
    return TextClassifier(model, tok, classes, bool(cfg.get("multi_label", False)), float(cfg.get("threshold", 0.5)))


def load_exported_lm(folder, **config_overrides):
    """An exported LM folder as ``(AWDLSTMLanguageModel, TextTokenizer)`` (e.g. phase 2's start).
    ``config_overrides`` change dropouts (e.g. ``drop_mult=0.5``)."""
    d, cfg = read_export(folder, TASK_LM)
    awd, tok = config_and_tokenizer(d, cfg)
    if config_overrides:
        awd = AWDLSTMConfig.from_dict({**awd.to_dict(), **config_overrides})
    model = AWDLSTMLanguageModel(awd)
    _load_checked(model, d / WEIGHTS, PREFIX[TASK_LM])
    return model, tok
