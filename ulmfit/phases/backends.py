"""The backend table: what each kind of model (``model.type``) does in each phase.

Every phase entry point, ``compare``, ``export``, ``predict`` and ``evaluate`` ask this table;
adding a backend is one new :class:`Backend` entry. A backend that lacks a phase says so in one
line (``pretrain`` of a transformers checkpoint, say), and a ``train.*`` field it cannot honour is
refused before anything runs instead of being dropped silently.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from ulmfit.core.device import resolve_device
from ulmfit.core.predictions import EnsembleClassifier
from ulmfit.errors import UlmfitError
from ulmfit.phases import classifier, lm, transformers
from ulmfit.phases.common import log, world
from ulmfit.phases.config import TrainSection
from ulmfit.phases.runs import RunInfo, begin_run, check_finished, check_out_dir, finish_run, read_run
from ulmfit.text.awd_lstm.hub_format import load_exported_classifier, load_exported_lm
from ulmfit.text.awd_lstm.lm_io import load_lm, read_lm_config
from ulmfit.text.awd_lstm.lm_train import generate as sample
from ulmfit.text.awd_lstm.text_classifier import TextClassifier
from ulmfit.text.tokenize.tokenizer import TextTokenizer
from ulmfit.text.transformers.text_classifier import TransformersTextClassifier


def _missing(backend: str, what: str, hint: str = "") -> Callable:
    def refuse(*_, **__):
        raise UlmfitError(f"model.type {backend} has no {what}{'; ' + hint if hint else ''}")
    return refuse


@dataclass(frozen=True)
class Backend:
    name: str
    pretrain: Callable
    finetune_lm: Callable
    train_classifier: Callable
    load_classifier: Callable       # run folder -> object with classes / predict / predict_proba
    load_lm: Callable               # run folder -> (model, tokenizer)
    lr_find: Callable | None = None  # (phase, cfg, start, end, num_it, quiet) -> LRFinderResult
    # train.* fields this backend ignores: a recipe that changes one from its default is refused
    unsupported_train: frozenset = field(default_factory=frozenset)
    exportable: bool = False        # `ulmfit export` writes it as a Hub folder
    ensembles: bool = False         # forward + backward ensemble
    layer_groups: Callable | None = None  # (classifier config, encoder folder) -> number of groups
    # (phase, its config) -> whether the phase continues from a checkpoint (`--resume`)
    can_resume: Callable = lambda phase, cfg: True


def _awd_train_classifier(cfg, quiet: bool = False, resume: bool = False):
    # the teacher of a distillation is any classifier folder: the phase gets this module's loader
    return classifier.train_classifier(cfg, quiet, resume, load_teacher=load_classifier)


def _awd_load_classifier(info: RunInfo):
    return load_exported_classifier(info.path) if info.exported else TextClassifier.load(info.path)


def _transformers_load_classifier(info: RunInfo):
    return TransformersTextClassifier.load(info.path / (info.tokenizer or "."))  # the save_pretrained folder


def _awd_load_lm(info: RunInfo):
    if info.exported:
        return load_exported_lm(info.path)  # checks its vocabulary size itself
    model, tokenizer = load_lm(info.path)[0], TextTokenizer.load(info.path)
    if len(tokenizer) != model.config.vocab_size:
        raise UlmfitError(f"{info.path}: the tokenizer has {len(tokenizer)} words but the LM was built for "
                          f"{model.config.vocab_size}; the vocabulary does not belong to these weights")
    return model, tokenizer


def _awd_lr_find(phase, cfg, start_lr, end_lr, num_it, quiet):
    if phase == "classifier":
        return classifier.lr_find_classifier(cfg, start_lr, end_lr, num_it, quiet)
    return lm.lr_find_lm(phase, cfg, start_lr, end_lr, num_it, quiet)


def _awd_groups(clf_cfg, encoder: str | None) -> int:
    """Layer groups of the AWD-LSTM classifier: the embedding, each LSTM, the head."""
    if encoder and (Path(encoder) / "lm_config.json").exists():
        return read_lm_config(Path(encoder) / "lm_config.json").n_layers + 2
    return lm.awd_config(clf_cfg.model, 10).n_layers + 2


BACKENDS: dict[str, Backend] = {
    "awd_lstm": Backend(
        "awd_lstm", lm.pretrain, lm.finetune_lm, _awd_train_classifier, _awd_load_classifier, _awd_load_lm,
        lr_find=_awd_lr_find, exportable=True, ensembles=True, layer_groups=_awd_groups),
    "transformers": Backend(
        "transformers",
        _missing("transformers", "pretraining phase", "a transformers checkpoint starts at finetune-lm"),
        transformers.finetune_lm, transformers.train_classifier,
        _transformers_load_classifier,
        _missing("transformers", "AWD-LSTM language model to load"),
        lr_find=transformers.lr_find, unsupported_train=frozenset(transformers.UNSUPPORTED_TRAIN),
        can_resume=lambda phase, cfg: phase == "finetune_lm" and cfg.objective == "contrastive"),
    "vision": Backend(
        "vision", *(_missing("vision", what, "use `ulmfit train-vision` or `ulmfit compare` on a vision recipe")
                    for what in ("text pretraining", "LM fine-tuning", "text classifier")),
        _missing("vision", "text classifier to load"), _missing("vision", "language model")),
}


def backend(name: str) -> Backend:
    """The table's entry for ``model.type`` (one line listing the choices when it is unknown)."""
    if name not in BACKENDS:
        raise UlmfitError(f"model.type must be one of {', '.join(BACKENDS)}, got {name!r}")
    return BACKENDS[name]


def backend_of(info: RunInfo) -> Backend:
    return backend(info.backend)


OBJECTIVES = ("lm", "contrastive")  # finetune_lm.objective


def check_train_fields(cfg) -> None:
    """Refuse a train.* field the config's backend would ignore, when it differs from the default."""
    b = backend(cfg.model.type)
    default = TrainSection()
    for f in sorted(b.unsupported_train):
        if getattr(cfg.train, f) != getattr(default, f):
            raise UlmfitError(f"train.{f} is not supported for model.type {b.name} (got {getattr(cfg.train, f)!r}); "
                              f"remove it from the recipe")
    objective = getattr(cfg, "objective", "lm")
    if objective not in OBJECTIVES:
        raise UlmfitError(f"unknown objective {objective!r}; choose one of {', '.join(OBJECTIVES)}")
    if objective == "contrastive" and b.name != "transformers":
        raise UlmfitError("objective contrastive trains a transformers sentence encoder; an AWD-LSTM fine-tunes "
                          "with objective lm")
    con = getattr(cfg, "contrastive", None)
    if con is not None and con.epochs and b.name != "transformers":
        raise UlmfitError("classifier.contrastive is for transformers backbones; set its epochs to 0 for an AWD-LSTM")
    probe = getattr(cfg, "linear_probe", None)
    probing = probe is not None and bool(probe.c)
    if probing and b.name != "transformers":
        raise UlmfitError("classifier.linear_probe is for transformers backbones; remove it for an AWD-LSTM")
    if probing and cfg.model.pooling == "cls":
        raise UlmfitError("classifier.linear_probe fits a pooling head: set model.pooling to mean, max or concat")
    if probing and cfg.model.long_docs != "truncate":
        raise UlmfitError("classifier.linear_probe reads each text's first window: use model.long_docs: truncate")
    if cfg.model.normalize and (probe is None or b.name != "transformers" or cfg.model.pooling == "cls"):
        raise UlmfitError("model.normalize scales the pooled features of a transformers classifier's head: it needs "
                          "model.pooling mean, max or concat in a classifier section")
    if str(cfg.train.strategy).lower() == "none" and not probing:
        raise UlmfitError("train.strategy none trains no stage after the contrastive one: it needs "
                          "classifier.linear_probe.c (a transformers classifier) to fit the head")
    if cfg.model.vectors.path and b.name != "awd_lstm":
        raise UlmfitError("model.vectors is for AWD-LSTMs; a transformers checkpoint brings its own embedding")
    if cfg.model.vectors.path and (getattr(cfg, "pretrained", None) or getattr(cfg, "encoder", None)):
        raise UlmfitError("model.vectors initialises a new embedding (pretrain, or a classifier with no encoder); "
                          "here the embedding comes from the LM: set vectors in its pretrain section")
    dis = getattr(cfg, "distil", None)
    if dis is not None and dis.teacher and b.name != "awd_lstm":
        raise UlmfitError("classifier.distil trains an AWD-LSTM student; a transformers classifier can be its "
                          "teacher (distil.teacher), not its student")
    if dis is not None and dis.texts and not dis.teacher:
        raise UlmfitError("classifier.distil.texts are labelled by a teacher: set distil.teacher too")
    if cfg.model.long_docs != "truncate" and b.name != "transformers":
        raise UlmfitError("model.long_docs is for transformers classifiers; an AWD-LSTM classifier reads every "
                          "token already (BPT3C)")
    st = getattr(cfg, "self_training", None)
    if st is not None and st.texts and b.name != "transformers":
        raise UlmfitError("classifier.self_training is for transformers backbones; leave its texts empty for an "
                          "AWD-LSTM")
    if st is not None and st.texts and st.mode == "head" and not probing:
        raise UlmfitError("classifier.self_training.mode head fits the head again as linear_probe's regression: "
                          "set classifier.linear_probe.c too")
    if st is not None and st.texts and st.mode == "all" and st.rounds not in (1, "auto"):
        raise UlmfitError(f"classifier.self_training.rounds {st.rounds} repeats mode head's labelling on frozen "
                          "features; mode all trains once: set self_training.mode: head or rounds: 1")


# ---- phases ------------------------------------------------------------------------------------

class RunResult(dict):
    """A phase's metrics (a plain dict, printed as JSON by the CLI) plus where its outputs are.

    ``result.load()`` loads what the phase saved; for a classifier ``result.predict(texts)`` works
    directly, so a notebook needs no second step."""

    def __init__(self, metrics: dict, out: Path):
        super().__init__(metrics)
        self.out = Path(out)
        self.kind = read_run(self.out).kind

    def load(self):
        return load_classifier(self.out) if self.kind != "lm" else load_language_model(self.out)[0]

    def predict(self, texts: list[str], top_k: int = 1) -> list[dict]:
        if self.kind == "lm":
            raise UlmfitError("predict needs a classifier result (train_classifier)")
        if not hasattr(self, "_clf"):
            self._clf = self.load()
        return self._clf.predict(list(texts), top_k=top_k)

    def generate(self, prompt: str, n_words: int = 40, temperature: float = 1.0) -> str:
        return generate(str(self.out), prompt, n_words, temperature)


def _run(phase: str, cfg, quiet: bool, resume: bool, force: bool) -> RunResult:
    """Run a phase. In one process it writes into ``<out>.partial`` and replaces ``out`` only when it
    finishes, so a failed or interrupted run never spoils a finished folder (under several
    processes it writes ``out`` directly)."""
    check_train_fields(cfg)
    fn = getattr(backend(cfg.model.type), phase)
    out = Path(cfg.out)
    staged = world()[1] == 1  # under torchrun every rank writes in place (no staging), same checks
    if not staged:
        check_finished(out, resume, force)
    stage = begin_run(out, resume, force) if staged else check_out_dir(out)
    try:
        metrics = fn(dataclasses.replace(cfg, out=str(stage)), quiet=quiet, resume=resume)
    except BaseException:
        if staged and stage.is_dir() and not any(stage.iterdir()):
            stage.rmdir()  # it failed before writing anything: nothing to resume, no empty folder left behind
        raise
    if staged:
        finish_run(stage, out)
    log(f"wrote {out}", quiet)
    return RunResult(metrics, out)


def pretrain(cfg, quiet: bool = False, resume: bool = False, force: bool = False) -> RunResult:
    """Phase 1: train a language model from scratch; returns its metrics (and where it is)."""
    return _run("pretrain", cfg, quiet, resume, force)


def finetune_lm(cfg, quiet: bool = False, resume: bool = False, force: bool = False) -> RunResult:
    """Phase 2: fine-tune a pretrained language model on the target domain's texts."""
    return _run("finetune_lm", cfg, quiet, resume, force)


def train_classifier(cfg, quiet: bool = False, resume: bool = False, force: bool = False) -> RunResult:
    """Phase 3: train a classifier on the encoder; evaluates on valid and test."""
    return _run("train_classifier", cfg, quiet, resume, force)


def lr_find(phase: str, cfg, start_lr=1e-7, end_lr=10.0, num_it=100, quiet=False):
    """LR range test on a phase's set-up; writes lr_find.json / lr_find.png to cfg.out and returns
    the LRFinderResult (it draws itself inline in a notebook; ``.suggestion`` is the LR)."""
    check_train_fields(cfg)
    check_out_dir(cfg.out)
    b = backend(cfg.model.type)
    if b.lr_find is None:
        raise UlmfitError(f"lr-find is not available for model.type {b.name}")
    return b.lr_find(phase, cfg, start_lr, end_lr, num_it, quiet)


# ---- loading any run folder --------------------------------------------------------------------

def load_classifier(folder: str | Path, device: str | None = None, verify: bool = True):
    """Any classifier folder ulmfit writes: an AWD-LSTM run, a transformers run, an exported folder
    or an ensemble; on the CPU, or on ``device`` (auto, cpu, cuda, cuda:N) when given. Weight and
    tokenizer files are checked against the run's manifest unless ``verify`` is False, and weights
    holding NaN or inf are refused."""
    info = read_run(folder)
    if verify:
        info.verify()
    if info.kind == "ensemble":
        clf = EnsembleClassifier.load(info.path, lambda member: load_classifier(member, verify=verify))
    elif info.kind == "classifier":
        clf = backend_of(info).load_classifier(info)
        check_finite(getattr(clf, "model", None), info.path)
    else:
        raise UlmfitError(f"{info.path} is a language model, not a classifier")
    return clf.to(resolve_device(device)) if device else clf


def load_language_model(folder: str | Path, verify: bool = True):
    """(model, tokenizer) of a language-model folder: ours or an exported one."""
    info = read_run(folder)
    if info.kind != "lm":
        raise UlmfitError(f"{info.path} is a {info.kind}, not a language model")
    if verify:
        info.verify()
    model, tokenizer = backend_of(info).load_lm(info)
    check_finite(model, info.path)
    return model, tokenizer


def generate(model_dir: str, prompt: str, n_words: int = 40, temperature: float = 1.0, seed: int = 42) -> str:
    """Continue ``prompt`` with the language model saved in ``model_dir``."""
    model, tokenizer = load_language_model(model_dir)
    return sample(model, tokenizer, prompt, n_words, temperature, seed)


def check_finite(model, where) -> None:
    """Refuse weights with NaN or inf values (a diverged run, or a damaged file)."""
    params = model.parameters() if hasattr(model, "parameters") else []
    if any(not bool(torch.isfinite(p).all()) for p in params):
        raise UlmfitError(f"the weights in {where} hold NaN or inf values: the run that wrote them diverged, or the "
                          "file is damaged")
