"""Phases 1 and 2 for AWD-LSTMs: pretrain a language model, fine-tune one on the target domain.

Each is a plain function of its config: set up (data, tokenizer, model, trainer), fit, write the
outputs folder (config.yaml, run.json, metrics, the model, the tokenizer, plots, report.md).
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ulmfit.core import lr_find, set_seed
from ulmfit.core.checkpoint import atomic_write_text, save_weights
from ulmfit.core.trainer import Trainer
from ulmfit.errors import UlmfitError
from ulmfit.phases.common import DATA_ROOT, finish, last_metrics, lm_texts, log, stages_for, token_cache, world
from ulmfit.phases.config import FinetuneLMConfig, PretrainConfig
from ulmfit.phases.runs import read_run
from ulmfit.phases.vectors import place_vectors, train_tokenizer
from ulmfit.text.awd_lstm.hub_format import load_exported_lm
from ulmfit.text.awd_lstm.lm_io import load_fastai_lm, load_lm, load_state, save_lm, transfer_vocab
from ulmfit.text.awd_lstm.lm_train import lm_trainer, make_streams
from ulmfit.text.awd_lstm.model import AWDLSTMConfig, AWDLSTMLanguageModel
from ulmfit.text.tokenize.tokenizer import TextTokenizer


@dataclass
class LMSetup:
    trainer: Trainer
    stages: list
    model: Any
    tokenizer: Any
    n_train_tokens: int
    out: Path
    info: dict = field(default_factory=dict)  # what word vectors added, for the run's metrics


def _lm_setup(cfg, model, tokenizer, train_texts, valid_texts, quiet: bool) -> LMSetup:
    out = Path(cfg.out)
    t = cfg.train
    train, valid, n_tok = make_streams(tokenizer, train_texts, valid_texts, out / "work", t.bs, t.bptt, t.seed,
                                       backwards=cfg.model.backwards, world=world(), cache=token_cache(cfg.data),
                                       variable_bptt=t.variable_bptt)
    trainer = lm_trainer(model, train, valid, t.trainer_config(quiet), out, t.alpha, t.beta, t.bptt)
    return LMSetup(trainer, stages_for(t, len(trainer.groups)), model, tokenizer, n_tok, out)


def _pretrain_setup(cfg: PretrainConfig, quiet: bool) -> LMSetup:
    set_seed(cfg.train.seed)
    stages_for(cfg.train, 4)  # a bad strategy / LR spec fails before any data is read
    train_texts, valid_texts = lm_texts(cfg.data, DATA_ROOT / "wikitext-2" / "train.txt")
    log(f"pretrain: {len(train_texts)} training and {len(valid_texts)} validation documents", quiet)
    tokenizer, vectors = train_tokenizer(train_texts, cfg.tokenizer, cfg.model.vectors)
    model = AWDLSTMLanguageModel(awd_config(cfg.model, len(tokenizer)))
    info = {} if vectors is None else place_vectors(model.encoder, tokenizer, vectors, cfg.model.vectors,
                                                    cfg.train.seed, quiet)
    s = _lm_setup(cfg, model, tokenizer, train_texts, valid_texts, quiet)
    s.info.update(info)
    return s


def awd_config(m, vocab_size: int) -> AWDLSTMConfig:
    """The AWD-LSTM of a recipe's model section: its preset with any sizes it sets."""
    sizes = {k: getattr(m, k) for k in ("emb_size", "n_hid", "n_layers") if getattr(m, k)}
    return AWDLSTMConfig.preset(m.arch, vocab_size, drop_mult=m.drop_mult, **sizes)


def _save_lm(s: LMSetup) -> None:
    save_lm(s.model, s.model.config, s.out)
    s.tokenizer.save(s.out)


def _lm_metrics(s: LMSetup, history: list[dict]) -> dict:
    m = last_metrics(history)
    m["train_tokens"] = s.n_train_tokens
    m["vocab_size"] = len(s.tokenizer)
    m["epochs"] = len(history)
    m.update(s.info)
    return m


def pretrain(cfg: PretrainConfig, quiet: bool = False, resume: bool = False) -> dict:
    """Phase 1: train an AWD-LSTM LM from scratch; returns the final validation metrics."""
    started = time.time()
    s = _pretrain_setup(cfg, quiet)
    history = s.trainer.fit(s.stages, resume=resume)
    _save_lm(s)
    what = (f"Pretrained an AWD-LSTM (`{cfg.model.arch}`) language model on `{cfg.data.train or 'WikiText-2'}`: "
            f"{s.n_train_tokens:,} training tokens, vocabulary {len(s.tokenizer):,}.")
    run = dict(kind="lm", backend="awd_lstm", phase="pretrain")
    return finish(s.out, cfg, run, "ulmfit pretrain", what, started, _lm_metrics(s, history), history, quiet)


def _load_pretrained(cfg: FinetuneLMConfig):
    """(model, tokenizer) of the pretrained LM: our folder, an exported folder, or fastai weights."""
    if not cfg.pretrained:
        raise UlmfitError("finetune_lm needs a pretrained LM: set `pretrained` (a pretrain output folder, "
                          "or a fastai .pth with `pretrained_vocab`)")
    src = Path(cfg.pretrained)
    if not src.exists():
        raise UlmfitError(f"pretrained LM {src} does not exist")
    if src.suffix == ".pth":
        if not cfg.pretrained_vocab:
            raise UlmfitError(f"{src} is fastai weights: also give its vocabulary .pkl as pretrained_vocab")
        model, _, itos = load_fastai_lm(src, cfg.pretrained_vocab)
        return model, TextTokenizer.from_vocab(itos)
    info = read_run(src).verify()
    if info.kind != "lm" or info.backend != "awd_lstm":
        raise UlmfitError(f"pretrained LM {src} is a {info.backend} {info.kind}, not an AWD-LSTM language model")
    if info.exported:
        return load_exported_lm(src)  # an `ulmfit export` / Hub folder
    model, _ = load_lm(src)
    return model, TextTokenizer.load(src)


def _finetune_setup(cfg: FinetuneLMConfig, quiet: bool) -> LMSetup:
    set_seed(cfg.train.seed)
    stages_for(cfg.train, 4)
    old_model, old_tok = _load_pretrained(cfg)
    train_texts, valid_texts = lm_texts(cfg.data, None)
    log(f"finetune-lm: {len(train_texts)} training and {len(valid_texts)} validation documents", quiet)
    tk = cfg.tokenizer
    tokenizer = TextTokenizer.train(train_texts, kind=tk.kind, min_freq=tk.min_freq, max_vocab=tk.max_vocab,
                                    vocab_size=tk.vocab_size)
    state = transfer_vocab(old_model.state_dict(), old_tok.vocab, tokenizer.vocab)
    lm_cfg = AWDLSTMConfig.from_dict({**old_model.config.to_dict(), "vocab_size": len(tokenizer),
                                      "drop_mult": cfg.model.drop_mult})
    model = AWDLSTMLanguageModel(lm_cfg)
    load_state(model, state, str(cfg.pretrained))
    return _lm_setup(cfg, model, tokenizer, train_texts, valid_texts, quiet)


def finetune_lm(cfg: FinetuneLMConfig, quiet: bool = False, resume: bool = False) -> dict:
    """Phase 2: fine-tune a pretrained LM on the domain's texts; saves the LM and its encoder."""
    started = time.time()
    s = _finetune_setup(cfg, quiet)
    before = _valid_before(s, resume)
    history = s.trainer.fit(s.stages, resume=resume)
    _save_lm(s)
    save_weights(s.model.encoder, s.out / "encoder.safetensors")
    m = _lm_metrics(s, history)
    m.update({f"before_{k}": v for k, v in before.items()})
    what = (f"Fine-tuned the LM `{cfg.pretrained}` on `{cfg.data.train}` ({s.n_train_tokens:,} tokens) with "
            f"strategy `{cfg.train.strategy}`, schedule `{cfg.train.schedule}`.")
    run = dict(kind="lm", backend="awd_lstm", phase="finetune_lm", parent=cfg.pretrained)
    return finish(s.out, cfg, run, "ulmfit finetune-lm", what, started, m, history, quiet)


def _valid_before(s: LMSetup, resume: bool) -> dict:
    """The pretrained LM's validation figures on the domain, before fine-tuning; kept in the run's
    work folder so that a resumed run does not score the validation texts again (minutes on IMDb)."""
    path = s.out / "work" / "valid_before.json"
    if resume and path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    before = s.trainer.evaluate()
    if s.trainer.accelerator.is_main_process:
        atomic_write_text(path, json.dumps(before))
    return before


def lr_find_lm(phase: str, cfg, start_lr=1e-7, end_lr=10.0, num_it=100, quiet=False):
    """LR range test on phase 1's or phase 2's set-up; writes lr_find.json / lr_find.png to cfg.out."""
    s = _pretrain_setup(cfg, quiet) if phase == "pretrain" else _finetune_setup(cfg, quiet)
    s.trainer.groups.set_trainable(s.stages[0].trainable(len(s.trainer.groups)))
    res = lr_find(s.trainer, start_lr, end_lr, num_it, lr_factor=cfg.train.lr_factor)
    res.save(s.out)
    shutil.rmtree(s.out / "work", ignore_errors=True)
    return res
