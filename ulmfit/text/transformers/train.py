"""Phases 2 and 3 on a transformers backbone, as plain functions of explicit arguments.

- `finetune_transformer_lm`: continue masked-LM (encoders; Devlin et al. 2019) or causal-LM
  (decoders; Radford et al. 2019) training on the domain's unlabelled texts — ULMFiT's target-task
  LM fine-tuning (Howard & Ruder 2018, sec. 3.2), "further pre-training" in Sun et al. 2019.
  A checkpoint without an LM head (e.g. a sentence-transformers `BertModel`) gets a freshly
  initialised head whose decoder is tied to the input embeddings; `LMResult.fresh_weights` lists it.
- `train_transformer_classifier`: a sequence classifier with any core strategy (gradual
  unfreezing, chain-thaw, full, head-only), discriminative LRs or layer-wise decay, any schedule.
- `build_classifier_trainer` gives the core `Trainer` and stages, e.g. for `ulmfit.core.lr_find`;
  `transformer_lr_find` runs the LR finder on one stage's trainable groups.

Both training functions use AdamW with transformers' usual betas (0.9, 0.999), eps 1e-8, weight
decay 0.01 and clipping at 1.0, and freeze norms with their group (`train_norm=False`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

from ulmfit.core import Hooks, TrainConfig, Trainer, build_strategy, lr_find, set_seed
from ulmfit.errors import UlmfitError
from ulmfit.text.transformers import data as td
from ulmfit.text.transformers.contrastive import resolve_mix, sup_con_stage
from ulmfit.text.transformers.linear_probe import fit_head, resolve_head
from ulmfit.text.transformers.self_training import read_pool, self_train, self_train_head
from ulmfit.text.transformers.backbone import (
    LMWrapper, from_pretrained, build_classifier, layer_groups, lm_kind, lm_loss, load_tokenizer,
    resolve_lr_factor,
)


def _config(seed, weight_decay, clip, max_steps_per_epoch, mixed_precision, progress) -> TrainConfig:
    return TrainConfig(optimizer="adamw", weight_decay=weight_decay, betas=(0.9, 0.999), eps=1e-8, clip=clip,
                       seed=seed, max_steps_per_epoch=max_steps_per_epoch, mixed_precision=mixed_precision,
                       progress=progress)


def make_stages(strategy, n_groups, epochs, lr, head_lr=None, layer_decay=None, lr_factor=None,
                schedule="linear", schedule_args=None, stages=None):
    """Core stages; `head_lr` replaces the LR of stages that train the head group alone."""
    factor = resolve_lr_factor(layer_decay, lr_factor)
    out = build_strategy(strategy, n_groups, epochs, lr, factor, schedule, schedule_args, stages)
    if head_lr is not None:
        for s in out:
            if s.trainable(n_groups) == [n_groups - 1]:
                s.lr = head_lr
    return out


def _perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


# ---- phase 2 --------------------------------------------------------------------------------
@dataclass
class LMResult:
    out_dir: Path
    kind: str                       # "masked" or "causal"
    history: list
    valid_loss: float | None
    perplexity: float | None
    train_seconds: float
    fresh_weights: list = field(default_factory=list)  # weights the checkpoint lacked (new LM head)


def finetune_transformer_lm(model_path, texts, out_dir, *, valid_texts=None, valid_pct: float = 0.1,
                            epochs=1, lr=1e-4, strategy: str = "full", head_lr=None, layer_decay=None,
                            lr_factor=None, schedule: str = "linear", schedule_args=None, stages=None,
                            mlm_probability: float = 0.15, max_length: int = 64, bs: int = 32,
                            blocks_per_group: int = 1, weight_decay: float = 0.01, clip: float = 1.0,
                            seed: int = 42, max_steps_per_epoch=None, mixed_precision: str = "no",
                            progress: bool = False, train_config: TrainConfig | None = None) -> LMResult:
    """Fine-tune a transformers checkpoint as an LM on `texts`; save it to `out_dir` (save_pretrained)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForMaskedLM

    set_seed(seed)
    texts = td.check_texts(texts, "LM texts")
    if valid_texts is None and valid_pct:
        import random

        idx = list(range(len(texts)))
        random.Random(seed).shuffle(idx)
        n_valid = int(len(texts) * valid_pct)
        valid_texts = [texts[i] for i in idx[:n_valid]]
        texts = [texts[i] for i in idx[n_valid:]]
    elif valid_texts is not None:
        valid_texts = td.check_texts(valid_texts, "LM valid texts")
    tok = load_tokenizer(model_path)
    kind = lm_kind(from_pretrained(AutoConfig, model_path, "model config"))
    cls = AutoModelForMaskedLM if kind == "masked" else AutoModelForCausalLM
    hf, info = from_pretrained(cls, model_path, "model", output_loading_info=True)
    if hf.config.pad_token_id is None:
        hf.config.pad_token_id = tok.pad_token_id
    model = LMWrapper(hf)
    groups = layer_groups(model, blocks_per_group)
    train, valid = td.lm_loaders(tok, texts, valid_texts, kind == "masked", max_length, bs, mlm_probability, seed)
    trainer = Trainer(model, groups, lm_loss(kind), train, valid,
                      train_config or _config(seed, weight_decay, clip, max_steps_per_epoch, mixed_precision,
                                              progress),
                      Hooks(split_batch=td.split_batch), loss_metrics={"perplexity": _perplexity})
    plan = make_stages(strategy, len(groups), epochs, lr, head_lr, layer_decay, lr_factor, schedule,
                       schedule_args, stages)
    t0 = time.time()
    history = trainer.fit(plan)
    secs = time.time() - t0
    out = Path(out_dir)
    hf.save_pretrained(out)
    tok.save_pretrained(out)
    _carry_dropped_weights(model_path, out, info.get("unexpected_keys", ()), hf.base_model_prefix)
    last = history[-1] if history else {}
    res = LMResult(out, kind, history, last.get("valid_loss"), last.get("valid_perplexity"), secs,
                   sorted(info.get("missing_keys", [])))
    summary = {k: v for k, v in res.__dict__.items() if k != "out_dir"}
    (out / "lm_metrics.json").write_text(json.dumps(summary, indent=1, default=str), encoding="utf-8")
    return res


def _carry_dropped_weights(src, out: Path, keys, prefix: str) -> None:
    """Copy weights the LM class dropped (BERT's pooler) into the saved file, so a classifier
    loaded from `out` with AutoModelForSequenceClassification starts from them, not from noise.
    Only for a local single-file checkpoint; the LM class itself ignores the extra keys."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    src_file, dst_file = Path(str(src)) / "model.safetensors", out / "model.safetensors"
    keys = sorted(keys)
    if not keys or not src_file.is_file() or not dst_file.is_file():
        return
    state = load_file(str(dst_file))
    with safe_open(str(src_file), "pt") as f:
        names = set(f.keys())
        for k in keys:
            if k in names:
                name = k if k.startswith(prefix + ".") or not prefix else f"{prefix}.{k}"
                state.setdefault(name, f.get_tensor(k))
    save_file(state, str(dst_file), metadata={"format": "pt"})


# ---- phase 3 --------------------------------------------------------------------------------
@dataclass
class ClassifierSetup:
    trainer: Trainer
    model: object                   # TransformerClassifier
    stages: list
    labels: td.LabelMap
    group_names: list


def build_classifier_trainer(model_path, train_texts, train_labels, valid_texts=None, valid_labels=None, *,
                             strategy: str = "gradual", epochs=4, lr=5e-5, head_lr=None, layer_decay=None,
                             lr_factor=None, schedule: str = "linear", schedule_args=None, stages=None,
                             pooling: str = "cls", dropout: float = 0.1, blocks_per_group: int = 1,
                             max_length: int = 64, bs: int = 32, weight_decay: float = 0.01,
                             clip: float = 1.0, seed: int = 42, out_dir=None, max_steps_per_epoch=None,
                             mixed_precision: str = "no", progress: bool = False,
                             train_config: TrainConfig | None = None, long_docs: str = "truncate",
                             normalize: bool = False) -> ClassifierSetup:
    """Model, layer groups, loaders, core `Trainer` and stages for a transformers classifier.

    `long_docs="windows"` trains on every `max_length`-token window of a text, each with the text's
    label; the per-epoch validation figures are then per window, the final ones per text."""
    import torch

    set_seed(seed)
    train_texts = td.check_texts(train_texts, "train texts")
    labels = td.LabelMap(train_labels)
    y = labels.encode(train_labels, "train labels")
    model = build_classifier(model_path, labels.names, pooling, dropout, max_length, long_docs=long_docs,
                             normalize=normalize)
    groups = layer_groups(model, blocks_per_group)
    train = td.classification_loader(model.tokenizer, train_texts, y, max_length, bs, True, seed, long_docs)
    valid = None
    if valid_texts is not None:
        vt = td.check_texts(valid_texts, "valid texts")
        valid = td.classification_loader(model.tokenizer, vt, labels.encode(valid_labels, "valid labels"),
                                          max_length, bs * 2, False, long_docs=long_docs)
    trainer = Trainer(model, groups, torch.nn.functional.cross_entropy, train, valid,
                      train_config or _config(seed, weight_decay, clip, max_steps_per_epoch, mixed_precision,
                                              progress),
                      Hooks(split_batch=td.split_batch), metrics=dict(td.METRICS), out_dir=out_dir)
    plan = make_stages(strategy, len(groups), epochs, lr, head_lr, layer_decay, lr_factor, schedule,
                       schedule_args, stages)
    return ClassifierSetup(trainer, model, plan, labels, groups.names)


@dataclass
class ClassifierResult:
    model: object                   # TransformerClassifier (save_pretrained, predict)
    history: list
    metrics: dict
    train_seconds: float
    group_names: list
    out_dir: Path | None = None

    def predict(self, texts, bs: int = 64) -> list:
        return self.model.predict(texts, bs)

    def predict_proba(self, texts, bs: int = 64):
        return self.model.predict_proba(texts, bs)


def _probe_stage(model, texts, y, linear_probe: dict, self_training: dict | None, seed: int, bs: int):
    """(history row, pool features or None): the head fitted on the frozen features; a centroid head
    measures from the mean feature of self-training's pool of unlabelled texts, if there are any."""
    pool_x = None
    if linear_probe.get("head") == "centroid" and self_training and self_training.get("texts"):
        pool_x = read_pool(model, texts, self_training["texts"], self_training.get("pool", 2000), seed, bs)
    row = fit_head(model, texts, y, bs=bs, center=None if pool_x is None else pool_x.mean(0), **linear_probe)
    return row, pool_x


def _self_training_stage(setup, texts, y, self_training: dict, linear_probe: dict | None, side: dict, bs: int,
                         pool_x=None):
    """(history rows, pseudo labels per class): mode "head" fits the head again on the frozen features
    (nothing else trains; `pool_x`, the pool's features if still current); mode "all" trains every group."""
    st = dict(self_training)
    unlabelled = st.pop("texts")
    if st.pop("mode", "all") == "head":
        for k in ("epochs", "lr"):
            st.pop(k, None)
        return self_train_head(setup.model, texts, y, unlabelled, bs=bs * 2, seed=side["seed"], pool_features=pool_x,
                               **(linear_probe or {}), **st)
    st.pop("rounds", None)  # mode all trains once (refused above 1 by the config check)
    return self_train(setup.model, setup.trainer.groups, texts, y, unlabelled, bs=bs, **side, **st)


def train_transformer_classifier(model_path, train_texts, train_labels, valid_texts=None, valid_labels=None,
                                 test_texts=None, test_labels=None, contrastive: dict | None = None,
                                 self_training: dict | None = None, linear_probe: dict | None = None,
                                 **kw) -> ClassifierResult:
    """Train (see `build_classifier_trainer` for the options), evaluate on test, export to `out_dir`.

    `contrastive` (optional: epochs, lr, temperature, bs, loss, pairs_per_example, layer_decay, mix, and
    from_checkpoint: `model_path` is the pretrained checkpoint, no phase 2, for `resolve_mix`) first
    trains the encoder with a supervised contrastive loss on the labelled texts
    (`contrastive.sup_con_stage`; its own layer_decay, else the classifier's), then the strategy's
    stages train the head and unfreeze as usual. `linear_probe` (optional: c, max_iter, head) then fits the
    head as a logistic regression (or a nearest-centroid head, measured from the mean feature of
    self-training's pool; `auto`: centroid for two classes) on the frozen encoder's pooled features before those stages
    (`linear_probe.fit_head`; LP-FT). `self_training` (optional: texts, mode, and
    `self_training.self_train`'s options) then pseudo-labels those unlabelled texts and trains on them:
    mode "all" trains every group, mode "head" fits the head again with `linear_probe`'s options.
    `out_dir` (optional) receives the trainer's metrics/checkpoints and, in `out_dir/model`, the
    `save_pretrained` folder (loads with AutoModelForSequenceClassification for pooling='cls').
    """
    setup = build_classifier_trainer(model_path, train_texts, train_labels, valid_texts, valid_labels, **kw)
    texts, y = list(train_texts), setup.labels.encode(train_labels, "train labels")  # checked by the set-up
    side = dict(layer_decay=kw.get("layer_decay"), seed=kw.get("seed", 42), train_config=kw.get("train_config"))
    t0 = time.time()
    history, mixed = [], None
    if linear_probe:  # `auto` names a head by the number of classes; the run's metrics say which
        linear_probe = dict(linear_probe, head=resolve_head(linear_probe.get("head", "logistic"),
                                                            len(setup.model.labels)))
    if contrastive and contrastive.get("epochs"):
        con = dict(contrastive)
        own_decay = con.pop("layer_decay", None)  # None: the classifier's layer decay
        from_checkpoint = con.pop("from_checkpoint", False)
        con["mix"] = mixed = resolve_mix(con.get("mix", 1.0), linear_probe["head"] if linear_probe else None,
                                         from_checkpoint)
        history = sup_con_stage(setup.model, texts, y, blocks_per_group=kw.get("blocks_per_group", 1),
                                **dict(side, layer_decay=own_decay or side["layer_decay"]), **con)
    pool_x = None
    if linear_probe:
        row, pool_x = _probe_stage(setup.model, texts, y, linear_probe, self_training, side["seed"],
                                   kw.get("bs", 32) * 2)
        history = history + [row]
    if setup.stages:  # strategy none: the head linear_probe fitted is the classifier's
        history = history + setup.trainer.fit(setup.stages)
    pseudo = None
    if self_training and self_training.get("texts"):
        same = pool_x is not None and not setup.stages  # no stage moved the encoder since the pool was read
        rows, pseudo = _self_training_stage(setup, texts, y, self_training, linear_probe, side, kw.get("bs", 32),
                                            pool_x if same else None)
        history = history + rows
    secs = time.time() - t0
    metrics = {k: v for k, v in (history[-1] if history else {}).items() if k.startswith("valid_")}
    windows = setup.model.long_docs == "windows"
    if windows and valid_texts is not None:  # per text, as predict answers
        metrics.update(td.text_metrics(setup.model.predict_proba(valid_texts),
                                       setup.labels.encode(valid_labels, "valid labels"), "valid"))
    elif (pseudo is not None or not setup.stages) and setup.trainer.valid_loader is not None:
        metrics.update(setup.trainer.evaluate(prefix="valid"))  # no stage's last row scored the final model
    if test_texts is not None:
        tt = td.check_texts(test_texts, "test texts")
        ty = setup.labels.encode(test_labels, "test labels")
        if windows:
            metrics.update(td.text_metrics(setup.model.predict_proba(tt), ty, "test"))
        else:
            loader = td.classification_loader(setup.model.tokenizer, tt, ty, setup.model.max_length, 64, False)
            metrics.update(setup.trainer.evaluate(loader, prefix="test", full_precision=True))  # as `evaluate` will
    metrics["train_seconds"] = secs
    if pseudo is not None:
        metrics["pseudo_labelled"] = pseudo
        if "rounds" in history[-1]:  # mode head says how many rounds it ran
            metrics["self_training_rounds"] = history[-1]["rounds"]
    if linear_probe:
        metrics["linear_probe_head"] = linear_probe["head"]
    if mixed is not None:
        metrics["contrastive_mix"] = mixed
    out = Path(kw["out_dir"]) if kw.get("out_dir") else None
    if out is not None:
        setup.model.save_pretrained(out / "model")
        (out / "metrics.json").write_text(json.dumps(metrics, indent=1), encoding="utf-8")
    return ClassifierResult(setup.model, history, metrics, secs, setup.group_names, out)


def transformer_lr_find(model_path, train_texts, train_labels, *, stage: int = 0, start_lr: float = 1e-7,
                        end_lr: float = 1.0, num_it: int = 100, out_dir=None, **kw):
    """LR range test on the groups that `stage` of the strategy trains (0: the head for 'gradual')."""
    setup = build_classifier_trainer(model_path, train_texts, train_labels, **kw)
    if not 0 <= stage < len(setup.stages):
        raise UlmfitError(f"stage {stage} out of range: the strategy has {len(setup.stages)} stage(s)")
    st = setup.stages[stage]
    setup.trainer.groups.set_trainable(st.trainable(len(setup.trainer.groups)))
    res = lr_find(setup.trainer, start_lr, end_lr, num_it, lr_factor=st.lr_factor)
    if out_dir is not None:
        res.save(out_dir)
    return res
