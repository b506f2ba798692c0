"""The three phases as plain functions of a config, plus the commands built on their outputs.

Each phase: config -> set-up (data, tokenizer, model, trainer) -> fit -> outputs folder holding
the resolved config.yaml, metrics.json, metrics.csv/jsonl, the model (safetensors), the
tokenizer, plots and report.md. Nothing is written outside `cfg.out`.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ulmfit import reports
from ulmfit.config import FinetuneLMConfig, PretrainConfig, RecipeConfig, save_yaml
from ulmfit.core import build_strategy, lr_find, set_seed
from ulmfit.core.trainer import Trainer
from ulmfit.errors import UlmfitError

DATA_ROOT = Path(os.environ.get("ULMFIT_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def _world() -> tuple[int, int]:
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


def _log(msg: str, quiet: bool) -> None:
    if not quiet and _world()[0] == 0:
        print(msg, file=sys.stderr, flush=True)


def _stages(t, n_groups: int):
    return build_strategy(t.strategy, n_groups, epochs=t.epochs, lr=t.lr, lr_factor=t.lr_factor,
                          schedule=t.schedule, schedule_args=t.schedule_kwargs(), stages=t.stages)


def _limit(texts: list, n: int | None) -> list:
    return texts if not n else texts[:n]


def _split_docs(texts: list[str], valid_pct: float, seed: int) -> tuple[list[str], list[str]]:
    if not 0 < valid_pct < 1:
        raise UlmfitError(f"valid_pct={valid_pct} must be between 0 and 1 (or give data.valid)")
    rng = np.random.default_rng(seed)
    idx = rng.permutation(len(texts))
    n_valid = max(1, int(round(len(texts) * valid_pct)))
    valid = set(idx[:n_valid].tolist())
    return [t for i, t in enumerate(texts) if i not in valid], [texts[i] for i in sorted(valid)]


def _lm_texts(data, default_train: Path | None) -> tuple[list[str], list[str]]:
    """Training and validation documents of an LM corpus from a DataConfig."""
    from ulmfit.text.readers import load_corpus

    train = data.train or (str(default_train) if default_train else None)
    if not train:
        raise UlmfitError("no training data: set data.train to a file or folder")
    cols = data.text_cols if _is_table(train) else None
    texts = _limit(list(load_corpus(train, text_cols=cols, wikitext_articles=data.articles)), data.max_items)
    if data.valid:
        valid = _limit(list(load_corpus(data.valid, text_cols=cols, wikitext_articles=data.articles)),
                       data.max_items and max(1, data.max_items // 10))
    else:
        texts, valid = _split_docs(texts, data.valid_pct, 0)
    if not texts or not valid:
        raise UlmfitError(f"{train}: no documents left for training or validation")
    return texts, valid


def _check_model_type(kind: str) -> None:
    if kind not in ("awd_lstm", "transformers"):
        raise UlmfitError(f"model.type must be awd_lstm or transformers, got {kind!r}")


def _is_table(path: str) -> bool:
    return Path(path).suffix.lower() in (".csv", ".tsv", ".jsonl", ".json", ".parquet")


# ---- outputs ----------------------------------------------------------------------------------

def _finish(out: Path, cfg, title: str, what: str, started: float, metrics: dict, history: list[dict],
            quiet: bool) -> dict:
    metrics["wall_s"] = round(time.time() - started, 2)
    save_yaml(cfg, out / "config.yaml")
    reports.write_metrics(out, metrics)
    reports.plot_history(history, out / "training_curves.png")
    shutil.rmtree(out / "checkpoints", ignore_errors=True)
    shutil.rmtree(out / "work", ignore_errors=True)
    files = sorted(p.name for p in out.iterdir() if p.is_file()) + ["report.md"]
    reports.write_report(out, title, what, started, metrics, history, sorted(set(files)))
    _log(f"wrote {out}", quiet)
    clf_files = (out / "classifier_config.json", out / "model" / "ulmfit_head.json")
    kind = "classifier" if any(p.exists() for p in clf_files) else "lm"
    return RunResult(metrics, out, kind)


class RunResult(dict):
    """A phase's metrics (a plain dict, printed as JSON by the CLI) plus where its outputs are.

    `result.load()` loads what the phase saved; for a classifier `result.predict(texts)` works
    directly, so a notebook needs no second step."""

    def __init__(self, metrics: dict, out: Path, kind: str):
        super().__init__(metrics)
        self.out, self.kind = Path(out), kind

    def load(self):
        if self.kind == "classifier":
            from ulmfit.text.text_classifier import load_classifier

            return load_classifier(self.out)
        from ulmfit.text.lm_io import load_lm

        return load_lm(self.out)[0]

    def predict(self, texts: list[str], top_k: int = 1) -> list[dict]:
        if self.kind != "classifier":
            raise UlmfitError("predict needs a classifier result (train_classifier)")
        if not hasattr(self, "_clf"):
            self._clf = self.load()
        return self._clf.predict(list(texts), top_k=top_k)

    def generate(self, prompt: str, n_words: int = 40, temperature: float = 1.0) -> str:
        return generate(str(self.out), prompt, n_words, temperature)


def _last(history: list[dict], prefix: str = "valid_") -> dict:
    return {k: v for k, v in (history[-1] if history else {}).items() if k.startswith(prefix)}


# ---- phase 1 and 2: language models ----------------------------------------------------------

def token_cache(data):
    """The on-disk cache of tokenized texts a phase uses (None when ``data.cache`` is off)."""
    from ulmfit.text.cache import TokenCache

    return TokenCache(data.cache_dir) if data.cache else None


@dataclass
class LMSetup:
    trainer: Trainer
    stages: list
    model: Any
    tokenizer: Any
    n_train_tokens: int
    out: Path


def _lm_setup(cfg, model, tokenizer, train_texts, valid_texts, quiet: bool) -> LMSetup:
    from ulmfit.text.lm_train import lm_trainer, make_streams

    out = Path(cfg.out)
    t = cfg.train
    train, valid, n_tok = make_streams(tokenizer, train_texts, valid_texts, out / "work", t.bs, t.bptt, t.seed,
                                       backwards=cfg.model.backwards, world=_world(), cache=token_cache(cfg.data),
                                       variable_bptt=t.variable_bptt)
    trainer = lm_trainer(model, train, valid, t, out, quiet)
    return LMSetup(trainer, _stages(t, len(trainer.groups)), model, tokenizer, n_tok, out)


def _pretrain_setup(cfg: PretrainConfig, quiet: bool) -> LMSetup:
    from ulmfit.text.awd_lstm import AWDLSTMLanguageModel
    from ulmfit.text.tokenizer import TextTokenizer

    set_seed(cfg.train.seed)
    _stages(cfg.train, 4)  # a bad strategy / LR spec fails before any data is read
    train_texts, valid_texts = _lm_texts(cfg.data, DATA_ROOT / "wikitext-2" / "train.txt")
    _log(f"pretrain: {len(train_texts)} training and {len(valid_texts)} validation documents", quiet)
    tk = cfg.tokenizer
    tokenizer = TextTokenizer.train(train_texts, kind=tk.kind, min_freq=tk.min_freq, max_vocab=tk.max_vocab,
                                    vocab_size=tk.vocab_size)
    model = AWDLSTMLanguageModel(_awd_config(cfg.model, len(tokenizer)))
    return _lm_setup(cfg, model, tokenizer, train_texts, valid_texts, quiet)


def _awd_config(m, vocab_size: int):
    from ulmfit.text.awd_lstm import AWDLSTMConfig

    sizes = {k: getattr(m, k) for k in ("emb_size", "n_hid", "n_layers") if getattr(m, k)}
    return AWDLSTMConfig.preset(m.arch, vocab_size, drop_mult=m.drop_mult, **sizes)


def _save_lm(s: LMSetup) -> None:
    from ulmfit.text.lm_io import save_lm

    save_lm(s.model, s.model.config, s.out)
    s.tokenizer.save(s.out)


def _lm_metrics(s: LMSetup, history: list[dict]) -> dict:
    m = _last(history)
    m["train_tokens"] = s.n_train_tokens
    m["vocab_size"] = len(s.tokenizer)
    m["epochs"] = len(history)
    return m


def pretrain(cfg: PretrainConfig, quiet: bool = False, resume: bool = False) -> dict:
    """Phase 1: train an AWD-LSTM LM from scratch; returns the final validation metrics."""
    if cfg.model.type != "awd_lstm":
        raise UlmfitError(f"pretrain trains AWD-LSTM language models (model.type={cfg.model.type!r}); a "
                          "transformers checkpoint starts at finetune-lm")
    started = time.time()
    s = _pretrain_setup(cfg, quiet)
    history = s.trainer.fit(s.stages, resume=resume)
    _save_lm(s)
    what = (f"Pretrained an AWD-LSTM (`{cfg.model.arch}`) language model on `{cfg.data.train or 'WikiText-2'}`: "
            f"{s.n_train_tokens:,} training tokens, vocabulary {len(s.tokenizer):,}.")
    return _finish(s.out, cfg, "ulmfit pretrain", what, started, _lm_metrics(s, history), history, quiet)


def _load_pretrained(cfg: FinetuneLMConfig):
    """(model, tokenizer) of the pretrained LM: our folder, an exported folder, or fastai weights."""
    from ulmfit.text.lm_io import load_fastai_lm, load_lm
    from ulmfit.text.tokenizer import TextTokenizer

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
    from ulmfit.hub import is_exported, load_exported_lm

    if src.is_dir() and is_exported(src) and not (src / "lm_config.json").is_file():
        return load_exported_lm(src)  # an `ulmfit export` / Hub folder
    model, _ = load_lm(src)
    return model, TextTokenizer.load(src)


def _finetune_setup(cfg: FinetuneLMConfig, quiet: bool) -> LMSetup:
    from ulmfit.text.awd_lstm import AWDLSTMConfig, AWDLSTMLanguageModel
    from ulmfit.text.lm_io import _load_state, transfer_vocab
    from ulmfit.text.tokenizer import TextTokenizer

    set_seed(cfg.train.seed)
    _stages(cfg.train, 4)
    old_model, old_tok = _load_pretrained(cfg)
    train_texts, valid_texts = _lm_texts(cfg.data, None)
    _log(f"finetune-lm: {len(train_texts)} training and {len(valid_texts)} validation documents", quiet)
    tk = cfg.tokenizer
    tokenizer = TextTokenizer.train(train_texts, kind=tk.kind, min_freq=tk.min_freq, max_vocab=tk.max_vocab,
                                    vocab_size=tk.vocab_size)
    state = transfer_vocab(old_model.state_dict(), old_tok.vocab, tokenizer.vocab)
    lm_cfg = AWDLSTMConfig.from_dict({**old_model.config.to_dict(), "vocab_size": len(tokenizer),
                                      "drop_mult": cfg.model.drop_mult})
    model = AWDLSTMLanguageModel(lm_cfg)
    _load_state(model, state, str(cfg.pretrained))
    return _lm_setup(cfg, model, tokenizer, train_texts, valid_texts, quiet)


def finetune_lm(cfg: FinetuneLMConfig, quiet: bool = False, resume: bool = False) -> dict:
    """Phase 2: fine-tune a pretrained LM on the domain's texts; saves the LM and its encoder."""
    from ulmfit.core.checkpoint import save_weights

    if cfg.model.type == "transformers":
        from ulmfit import transformers_phase

        return transformers_phase.finetune_lm(cfg, quiet)
    _check_model_type(cfg.model.type)
    started = time.time()
    s = _finetune_setup(cfg, quiet)
    before = s.trainer.evaluate()
    history = s.trainer.fit(s.stages, resume=resume)
    _save_lm(s)
    save_weights(s.model.encoder, s.out / "encoder.safetensors")
    m = _lm_metrics(s, history)
    m.update({f"before_{k}": v for k, v in before.items()})
    what = (f"Fine-tuned the LM `{cfg.pretrained}` on `{cfg.data.train}` ({s.n_train_tokens:,} tokens) with "
            f"strategy `{cfg.train.strategy}`, schedule `{cfg.train.schedule}`.")
    return _finish(s.out, cfg, "ulmfit finetune-lm", what, started, m, history, quiet)


# ---- phase 3: classifier ----------------------------------------------------------------------
from ulmfit.clas_phase import evaluate, lr_find_classifier, predict_cli, train_classifier  # noqa: E402,F401


def lr_find_phase(phase: str, cfg, start_lr=1e-7, end_lr=10.0, num_it=100, quiet=False):
    """LR range test on a phase's set-up; writes lr_find.json / lr_find.png to cfg.out and returns
    the LRFinderResult (it draws itself inline in a notebook; `.suggestion` is the LR)."""
    if phase == "classifier":
        return lr_find_classifier(cfg, start_lr, end_lr, num_it, quiet)
    s = _pretrain_setup(cfg, quiet) if phase == "pretrain" else _finetune_setup(cfg, quiet)
    s.trainer.groups.set_trainable(s.stages[0].trainable(len(s.trainer.groups)))
    res = lr_find(s.trainer, start_lr, end_lr, num_it, lr_factor=cfg.train.lr_factor)
    res.save(s.out)
    shutil.rmtree(s.out / "work", ignore_errors=True)
    return res


def generate(model_dir: str, prompt: str, n_words: int = 40, temperature: float = 1.0, seed: int = 42) -> str:
    from ulmfit.text.lm_io import load_lm
    from ulmfit.text.lm_train import generate as gen
    from ulmfit.text.tokenizer import TextTokenizer

    model, _ = load_lm(model_dir)
    return gen(model, TextTokenizer.load(model_dir), prompt, n_words, temperature, seed)


# ---- the whole recipe --------------------------------------------------------------------------

def backward_recipe(cfg: RecipeConfig) -> RecipeConfig:
    """The recipe's backward twin: every phase with ``model.backwards``, under ``<out>/backward/``,
    each phase starting from the backward phase before it."""
    import copy

    tw = copy.deepcopy(cfg)
    root = Path(cfg.out) / "backward"
    tw.out, tw.ensemble = str(root), False
    for name in ("pretrain", "finetune_lm", "classifier"):
        section = getattr(tw, name)
        if section is not None:
            section.model.backwards = True
            section.out = str(root / name)
    if tw.finetune_lm:
        if tw.pretrain:
            tw.finetune_lm.pretrained = tw.pretrain.out
        elif cfg.backward_pretrained:
            tw.finetune_lm.pretrained = cfg.backward_pretrained
        elif tw.finetune_lm.pretrained:
            raise UlmfitError(f"ensemble: the recipe fine-tunes {tw.finetune_lm.pretrained} without a pretrain "
                              "section; set backward_pretrained to a backward LM (pretrain with model.backwards=true)")
    if tw.classifier and tw.classifier.encoder:
        if not tw.finetune_lm:
            raise UlmfitError("ensemble: the classifier starts from an external encoder; give the recipe a "
                              "finetune_lm section so the backward classifier has a backward encoder")
        tw.classifier.encoder = tw.finetune_lm.out
    return tw


def _run_ensemble(cfg: RecipeConfig, force: bool, quiet: bool) -> dict[str, dict]:
    """Train the backward twin, then evaluate forward+backward averaged on the test file."""
    from ulmfit.clas_phase import evaluate as evaluate_clf
    from ulmfit.text.text_classifier import EnsembleClassifier

    if not cfg.classifier or cfg.classifier.model.type != "awd_lstm":
        raise UlmfitError("ensemble: needs an AWD-LSTM classifier section (forward + backward classifiers)")
    twin = backward_recipe(cfg)
    _log(f"== ensemble: backward phases -> {twin.out}", quiet)
    back = run_recipe(twin, force=force, quiet=quiet)
    ens = EnsembleClassifier.save(Path(cfg.out) / "ensemble", [cfg.classifier.out, twin.classifier.out])
    d = cfg.classifier.data
    res = {"backward": back}
    if d.test:
        res["ensemble"] = evaluate_clf(str(ens), d.test, d.text_cols, d.label_col, out=str(ens))
        _log(f"ensemble (forward+backward): test accuracy {res['ensemble']['test_accuracy']:.4f}", quiet)
    return res


def run_recipe(cfg: RecipeConfig, force: bool = False, quiet: bool = False) -> dict:
    """Run the recipe's phases in order; a phase whose metrics.json exists is skipped unless force."""
    started = time.time()
    results: dict[str, dict] = {}
    plan = [("pretrain", cfg.pretrain, pretrain), ("finetune_lm", cfg.finetune_lm, finetune_lm),
            ("classifier", cfg.classifier, train_classifier)]
    if not any(c for _, c, _ in plan):
        raise UlmfitError("the recipe has no pretrain, finetune_lm or classifier section")
    for name, phase_cfg, fn in plan:
        if phase_cfg is None:
            continue
        done = Path(phase_cfg.out) / "metrics.json"
        if done.exists() and not force:
            _log(f"{name}: output exists in {phase_cfg.out}, skipping (use --force to re-run)", quiet)
            results[name] = json.loads(done.read_text(encoding="utf-8"))
            continue
        _log(f"== {name} -> {phase_cfg.out}", quiet)
        results[name] = fn(phase_cfg, quiet=quiet)
    if cfg.ensemble:
        results.update(_run_ensemble(cfg, force, quiet))
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, out / "config.yaml")
    summary = {f"{p}.{k}": v for p, m in results.items() for k, v in m.items()
               if isinstance(v, (int, float)) and not k.startswith(("test_precision", "test_recall", "test_f1_",
                                                                      "valid_precision", "valid_recall", "valid_f1_"))}
    reports.write_metrics(out, summary)
    reports.write_report(out, "ulmfit run", f"Ran {', '.join(results)} from the recipe.", started, summary, [],
                         [f"{p}/" for p in results] + ["config.yaml", "metrics.json"])
    return summary
