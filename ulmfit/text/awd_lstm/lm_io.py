"""Saving and loading AWD-LSTM language models, and adopting fastai's.

Our LM folder: ``model.safetensors`` (the tied embedding/decoder matrix stored once, under
``encoder.emb.weight``) and ``lm_config.json`` (:class:`AWDLSTMConfig` fields). Files are written
to a temporary name and renamed, so a crash never leaves a half-written checkpoint.

fastai (v2, and v1's WT103 files) saves an AWD-LSTM LM as a pickled ``.pth`` state dict plus a
pickled vocabulary list ``.pkl``. We read the ``.pth`` with ``torch.load(weights_only=True)`` and
the ``.pkl`` with an unpickler that refuses to import anything, so neither can run code.
fastai's key layout (``fastai/text/models/awdlstm.py``, ``SequentialRNN(AWD_LSTM, LinearDecoder)``):

  0.encoder.weight                      embedding (V, emb)        -> encoder.emb.weight
  0.encoder_dp.emb.weight               same tensor again          (ignored)
  0.rnns.{i}.weight_hh_l0_raw           raw hidden-hidden weights  -> encoder.rnns.{i}.module.weight_hh_l0
  0.rnns.{i}.module.weight_hh_l0        last *dropped* copy (v1)   (ignored when the raw one is there)
  0.rnns.{i}.module.{weight_ih,bias_ih,bias_hh}_l0[_reverse]      -> encoder.rnns.{i}.module.*
  1.decoder.weight                      tied to the embedding      (ignored)
  1.decoder.bias                                                   -> decoder.bias
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
from pathlib import Path

import torch

from ulmfit.core.checkpoint import atomic_write, atomic_write_text, load_torch_state, weights_state
from ulmfit.errors import UlmfitError
from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel

__all__ = ["save_lm", "load_lm", "load_state", "read_lm_config", "read_fastai_vocab", "fastai_to_ulmfit", "load_fastai_lm", "transfer_vocab"]

WEIGHTS, CONFIG = "model.safetensors", "lm_config.json"
EMB, DEC_W, DEC_B = "encoder.emb.weight", "decoder.weight", "decoder.bias"


def save_lm(model: AWDLSTMLanguageModel, config: AWDLSTMConfig, out_dir: str | os.PathLike) -> Path:
    """Write ``model.safetensors`` + ``lm_config.json`` into ``out_dir``; returns the folder."""
    from safetensors.torch import save_file

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    state = weights_state(model)  # the tie stored once, under EMB (the encoder is registered first)
    # one metadata key: safetensors writes several in no fixed order, and then the same weights would
    # make files (and the sha256 run.json records) that differ from run to run
    atomic_write(out / WEIGHTS, lambda p: save_file(state, str(p), metadata={"format": "pt"}))
    atomic_write_text(out / CONFIG, json.dumps(config.to_dict(), indent=2) + "\n")
    return out


def read_lm_config(path: Path) -> AWDLSTMConfig:
    try:
        return AWDLSTMConfig.from_dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise UlmfitError(f"cannot read LM config {path}: {e}") from None


def load_lm(lm_dir: str | os.PathLike, **config_overrides) -> tuple[AWDLSTMLanguageModel, AWDLSTMConfig]:
    """Load a folder written by :func:`save_lm`. ``config_overrides`` (e.g. ``drop_mult=0.5``)
    change dropouts; sizes must match the weights."""
    from safetensors.torch import load_file

    d = Path(lm_dir)
    for name in (WEIGHTS, CONFIG):
        if not (d / name).is_file():
            raise UlmfitError(f"LM folder {d} has no {name} (expected files: {WEIGHTS}, {CONFIG})")
    config = read_lm_config(d / CONFIG)
    if config_overrides:
        config = AWDLSTMConfig.from_dict({**config.to_dict(), **config_overrides})
    try:
        state = load_file(str(d / WEIGHTS))
    except Exception as e:  # safetensors raises its own error types for corrupt files
        raise UlmfitError(f"cannot read weights {d / WEIGHTS}: {e}") from None
    model = AWDLSTMLanguageModel(config)
    load_state(model, state, str(d / WEIGHTS))
    return model, config


def load_state(model: AWDLSTMLanguageModel, state: dict, source: str) -> None:
    state = dict(state)
    emb = state.get(EMB)
    if emb is None:
        raise UlmfitError(f"{source} has no '{EMB}' tensor: not an AWD-LSTM language model")
    v, e = model.config.vocab_size, model.config.emb_size
    if tuple(emb.shape) != (v, e):
        raise UlmfitError(
            f"{source}: embedding is {tuple(emb.shape)} but the config says vocab_size={v}, emb_size={e}; "
            "the vocabulary does not match this checkpoint (use transfer_vocab to adapt it)")
    state.pop(DEC_W, None)
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k != DEC_W]
    if missing or unexpected:
        raise UlmfitError(f"{source} does not fit the AWD-LSTM config: missing {missing}, unexpected {unexpected}")


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Unpickler that imports nothing: lists, strings, numbers and dicts need no globals."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refused to load global {module}.{name}")


def read_fastai_vocab(path: str | os.PathLike) -> list[str]:
    """Read fastai's vocabulary ``.pkl`` (a pickled list of strings) without running any code."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as e:
        raise UlmfitError(f"cannot read vocabulary file {p}: {e}") from None
    try:
        itos = _NoGlobalsUnpickler(io.BytesIO(data)).load()
    except pickle.UnpicklingError as e:
        raise UlmfitError(f"vocabulary file {p} is not a plain pickled list of strings ({e}); "
                          "refusing to load it, since a pickle can run code") from None
    except Exception as e:
        raise UlmfitError(f"vocabulary file {p} is not a readable pickle: {e}") from None
    if not isinstance(itos, list) or not all(isinstance(w, str) for w in itos):
        raise UlmfitError(f"vocabulary file {p} must hold a list of strings, got {type(itos).__name__}")
    return itos


_RNN = re.compile(r"0\.rnns\.(\d+)\.(module\.)?(\w+)$")


def fastai_to_ulmfit(sd: dict, source: str = "fastai state dict") -> tuple[dict, dict]:
    """Map a fastai AWD-LSTM LM state dict to our keys; also returns the sizes it implies
    (``vocab_size, emb_size, n_hid, n_layers, bidir``)."""
    if "model" in sd and isinstance(sd["model"], dict):
        sd = sd["model"]  # fastai's save(with_opt=True)
    if "0.encoder.weight" not in sd:
        raise UlmfitError(f"{source} has no '0.encoder.weight': not a fastai AWD-LSTM language model")
    out = {EMB: sd["0.encoder.weight"]}
    if "1.decoder.bias" in sd:
        out[DEC_B] = sd["1.decoder.bias"]
    raw = {}
    for k, v in sd.items():
        m = _RNN.match(k)
        if not m:
            continue
        i, name = int(m.group(1)), m.group(3)
        if name.endswith("_raw"):
            raw[(i, name[:-4])] = v
        else:
            out.setdefault(f"encoder.rnns.{i}.module.{name}", v)
    for (i, name), v in raw.items():  # the raw weights win over fastai v1's dropped copies
        out[f"encoder.rnns.{i}.module.{name}"] = v
    n_layers = 1 + max((int(_RNN.match(k).group(1)) for k in sd if _RNN.match(k)), default=-1)
    if n_layers < 1:
        raise UlmfitError(f"{source} has no '0.rnns.*' LSTM weights")
    bidir = any(k.endswith("_reverse") for k in out)
    vocab_size, emb_size = out[EMB].shape
    n_hid = out["encoder.rnns.0.module.weight_hh_l0"].shape[1] * (2 if bidir else 1)
    sizes = dict(vocab_size=int(vocab_size), emb_size=int(emb_size), n_hid=int(n_hid),
                 n_layers=n_layers, bidir=bidir)
    return out, sizes


def transfer_vocab(state: dict, old_itos: list[str], new_itos: list[str]) -> dict:
    """Adapt an LM state dict (our keys) from ``old_itos`` to ``new_itos`` (fastai ``match_embeds``).

    Rows of words in both vocabularies move to their new positions; new words get the mean
    embedding row and the mean decoder bias. Returns a new dict; other tensors are shared.
    """
    emb = state[EMB]
    if emb.size(0) != len(old_itos):
        raise UlmfitError(f"the old vocabulary has {len(old_itos)} words but the checkpoint's embedding "
                          f"has {emb.size(0)} rows: the vocabulary file does not belong to these weights")
    old_stoi = {w: i for i, w in enumerate(old_itos)}
    idx = torch.tensor([old_stoi.get(w, -1) for w in new_itos], dtype=torch.long)
    known = idx >= 0
    src = idx.clamp(min=0)

    def remap(t: torch.Tensor) -> torch.Tensor:
        new = t[src].clone()
        new[~known] = t.mean(0).to(t.dtype)
        return new

    out = dict(state)
    out[EMB] = remap(emb)
    out.pop(DEC_W, None)  # tied to the embedding
    if DEC_B in state:
        out[DEC_B] = remap(state[DEC_B])
    return out


def load_fastai_lm(weights: str | os.PathLike, vocab: str | os.PathLike | None = None,
                   new_itos: list[str] | None = None, **config_overrides
                   ) -> tuple[AWDLSTMLanguageModel, AWDLSTMConfig, list[str] | None]:
    """Load fastai AWD-LSTM LM weights (``.pth``) and optionally its vocabulary (``.pkl``).

    With ``new_itos`` the weights are adapted to that vocabulary (:func:`transfer_vocab`; needs
    ``vocab``). Returns ``(model, config, itos)`` where ``itos`` is the model's vocabulary (None
    when no vocabulary was given). ``config_overrides`` set dropouts (e.g. ``drop_mult=0.3``).
    """
    wpath = Path(weights)
    sd = load_torch_state(wpath, "fastai weights")
    state, sizes = fastai_to_ulmfit(sd, str(wpath))
    itos = read_fastai_vocab(vocab) if vocab is not None else None
    if itos is not None and len(itos) != sizes["vocab_size"]:
        raise UlmfitError(f"vocabulary {vocab} has {len(itos)} words but {wpath} has an embedding of "
                          f"{sizes['vocab_size']} rows: they do not belong together")
    if new_itos is not None:
        if itos is None:
            raise UlmfitError("adapting fastai weights to a new vocabulary needs the old vocabulary (.pkl)")
        state = transfer_vocab(state, itos, new_itos)
        itos, sizes["vocab_size"] = list(new_itos), len(new_itos)
    config = AWDLSTMConfig(**sizes, **config_overrides)
    model = AWDLSTMLanguageModel(config)
    load_state(model, state, str(wpath))
    return model, config, itos
