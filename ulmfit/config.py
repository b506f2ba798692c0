"""One dataclass per phase; YAML in, resolved YAML saved next to every output.

A recipe is one YAML file with a section per phase (`pretrain`, `finetune_lm`, `classifier`)
plus `out` (the root output folder). Every CLI flag is a field here; `--set a.b=value` overrides
any field, and an unknown key or a wrong type is a UlmfitError that names the key and suggests the
closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ulmfit.errors import UlmfitError


class _Loader(yaml.SafeLoader):
    """YAML 1.2 scalars where 1.1 surprises: ``1e-5`` (no dot) is a number, not a string, and only
    true/false are booleans, so ``mixed_precision: no`` (or ``--set train.mixed_precision=no``)
    stays the string "no" instead of becoming False."""


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    ch: [(tag, rx) for tag, rx in resolvers if tag != _BOOL]
    for ch, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(_BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:\d[\d_]*(?:\.[\d_]*)?|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def _yaml_load(text: str):
    return yaml.load(text, Loader=_Loader)


@dataclass
class DataConfig:
    train: str | None = None           # file or folder (csv, tsv, jsonl, parquet, txt, class folders)
    valid: str | None = None           # without it, a stratified `valid_pct` split of train
    test: str | None = None
    text_cols: list[str] = field(default_factory=lambda: ["text"])
    label_col: str | None = "label"
    valid_pct: float = 0.1
    multi_label: bool = False
    label_delim: str = "|"
    max_items: int | None = None       # use only the first n documents (quick runs)
    train_size: int | None = None      # stratified subsample of labelled training rows (low-shot)
    articles: bool = False             # split WikiText-style files into articles on ' = Title = '
    strict: bool = False               # empty texts are an error instead of a warning
    cache: bool = True                 # keep tokenized texts on disk; a second run skips tokenization
    cache_dir: str | None = None       # where (default: $ULMFIT_CACHE or ~/.cache/ulmfit)


@dataclass
class TokenizerConfig:
    kind: str = "word"                 # word | unigram | bpe
    min_freq: int = 3
    max_vocab: int = 60000
    vocab_size: int = 15000            # subword vocabularies


@dataclass
class ModelConfig:
    type: str = "awd_lstm"             # awd_lstm | transformers
    arch: str = "small"                # awd_lstm preset: small | paper
    emb_size: int | None = None
    n_hid: int | None = None
    n_layers: int | None = None
    drop_mult: float = 1.0
    name_or_path: str | None = None    # transformers checkpoint (local folder or Hub name)
    backwards: bool = False
    pooling: str = "cls"               # transformers classifier: cls | mean | max | concat
    layer_decay: float | None = None   # transformers: each lower group gets lr x layer_decay
    max_length: int = 64               # transformers: tokens per text
    blocks_per_group: int = 1          # transformers: blocks in one layer group
    head_lr: float | None = None       # transformers: LR of stages that train the head alone


@dataclass
class TrainSection:
    strategy: str = "full"             # gradual | chain_thaw | full | head_only | custom
    epochs: Any = 1                    # one number, or one per stage
    lr: Any = 1e-3                     # number, [low, high], per-group list, or one per stage
    lr_factor: float | None = 2.6      # discriminative factor (lower group = upper / factor)
    schedule: str = "one_cycle"        # stlr | one_cycle | sgdr | cosine | linear | constant
    schedule_args: dict = field(default_factory=dict)
    # one_cycle: Adam's beta1 goes moms[0] -> moms[1] over the warm-up and back to moms[2]
    # (None: the schedule's own (0.95, 0.85, 0.95)). Other schedules keep betas[0].
    moms: list[float] | None = None
    # one_cycle: fraction of the steps spent warming up (None: the schedule's own 0.25)
    pct_start: float | None = None
    stages: list | None = None         # custom strategy: list of stage dicts
    bs: int = 64
    bptt: int = 72
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    eps: float = 1e-6                  # Adam's epsilon
    clip: float | None = 0.25
    grad_accum: int = 1
    mixed_precision: str = "auto"      # auto (bf16 where the CPU/GPU has it) | no | bf16 | fp16
    seed: int = 42
    max_steps_per_epoch: int | None = None
    early_stopping_patience: int | None = None
    variable_bptt: bool = True         # LMs: AWD-LSTM's random sequence lengths (False: always bptt)
    alpha: float = 2.0                 # AR (LMs)
    beta: float = 1.0                  # TAR (LMs)

    def schedule_kwargs(self) -> dict:
        """``schedule_args`` plus ``moms`` and ``pct_start`` when the schedule is a one-cycle (other
        schedules would refuse them); keys written in ``schedule_args`` win."""
        from ulmfit.core.schedules import schedule_key

        args = dict(self.schedule_args or {})
        if schedule_key(self.schedule) == "one_cycle":
            if self.moms is not None:
                args.setdefault("moms", list(self.moms))
            if self.pct_start is not None:
                args.setdefault("pct_start", self.pct_start)
        return args


# AWD-LSTM pretraining cycles Adam's beta1 0.8 -> 0.7 -> 0.8 as fastai's TextLearner does (ULMFiT
# uses beta1 0.7): one WikiText-2 epoch of `small` gave valid perplexity 130.6 against 163.7 with
# the generic (0.95, 0.85, 0.95), the backward LM 123.4 against 164.0. Classifiers keep the
# generic cycle: with 0.8/0.7/0.8 TREC-6 fell 0.940 -> 0.910, SST-2 0.805 -> 0.787 (README,
# "LM pretraining settings").
PRETRAIN_MOMS = [0.8, 0.7, 0.8]
# ... and warms up over 40% of the steps, not 25%: with the low momentum the LR peak sent one run
# in six astray (seed 42 fp32: 178.2 -> 122.5 at 0.4); on one CPU, seeds 42-44 bf16 gave 123.0-125.9
# at 0.4 against 126.6-128.8 at 0.25 (README, "LM pretraining settings").
PRETRAIN_PCT_START = 0.4


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # An LM from scratch clips gradients at 1.0, not AWD-LSTM's 0.25 (made for SGD): one WikiText-2
    # epoch of `small` gave valid perplexity 183.1 at 0.25, 172.8 unclipped and 163.7 at 1.0, and
    # the backward LM 183.0 / 392.0 (unclipped went astray) / 164.0 (README, "LM pretraining
    # settings"). eps 1e-8 gave 157.3 unclipped on the full epoch but diverged on the quickstart.
    train: TrainSection = field(default_factory=lambda: TrainSection(lr=1e-2, schedule="one_cycle", clip=1.0,
                                                                       moms=list(PRETRAIN_MOMS),
                                                                       pct_start=PRETRAIN_PCT_START))
    out: str = "runs/pretrain"


@dataclass
class FinetuneLMConfig:
    pretrained: str | None = None      # an LM folder (ours, exported, or fastai .pth + vocab .pkl)
    pretrained_vocab: str | None = None  # fastai vocab .pkl when `pretrained` is a .pth file
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainSection = field(default_factory=lambda: TrainSection(
        strategy="gradual", epochs=[1, 1], lr=[1e-2, 1e-3], schedule="stlr"))
    out: str = "runs/finetune_lm"


@dataclass
class ClassifierConfig:
    encoder: str | None = None         # fine-tuned LM folder; None = random encoder (baseline)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(drop_mult=0.5))
    train: TrainSection = field(default_factory=lambda: TrainSection(
        strategy="gradual", epochs=[1, 1, 1, 2], lr=[2e-2, 1e-2, 5e-3, 1e-3], schedule="one_cycle"))
    max_len: int = 72 * 20             # BPT3C: keep outputs for the last max_len tokens
    head_hidden: int = 50
    label_smoothing: float = 0.0
    threshold: float = 0.5             # multi-label decision threshold
    out: str = "runs/classifier"


@dataclass
class RecipeConfig:
    out: str = "runs/recipe"
    pretrain: PretrainConfig | None = None
    finetune_lm: FinetuneLMConfig | None = None
    classifier: ClassifierConfig | None = None
    compare: dict | None = None        # `ulmfit compare` settings (strategies, seeds, sizes, overrides)
    ensemble: bool = False             # also train every phase backwards; report forward+backward averaged
    backward_pretrained: str | None = None  # the backward LM to fine-tune when the recipe has no pretrain


# ---- conversion -------------------------------------------------------------------------------

def _fail_key(key: str, valid: list[str], where: str) -> typing.NoReturn:
    close = difflib.get_close_matches(key.split(".")[-1], valid, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise UlmfitError(f"unknown config key {where + key!r}{hint}; valid keys: {', '.join(valid)}")


def _coerce(value, tp, where: str):
    """Check `value` against the annotation `tp`; ints become floats where a float is wanted."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return _coerce(value, a, where)
            except UlmfitError as e:
                errors.append(str(e))
        raise UlmfitError(errors[0] if errors else f"{where}: bad value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise UlmfitError(f"config key {where!r} must be a mapping, got {value!r}")
        return from_dict(tp, value, where + ".")
    if origin is list:
        if isinstance(value, tuple):
            value = list(value)
        if isinstance(value, str) and args and args[0] is str:
            value = [v.strip() for v in value.split(",")]
        if not isinstance(value, list):
            raise UlmfitError(f"config key {where!r} must be a list, got {value!r}")
        return [_coerce(v, args[0], where) for v in value] if args else value
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            raise UlmfitError(f"config key {where!r} must be a mapping, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise UlmfitError(f"config key {where!r} must be true or false, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise UlmfitError(f"config key {where!r} must be a number, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise UlmfitError(f"config key {where!r} must be an integer, got {value!r}")
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise UlmfitError(f"config key {where!r} must be a string, got {value!r}")
    return value


def from_dict(cls, d: dict | None, where: str = ""):
    """Build dataclass `cls` from a mapping, checking every key and type."""
    d = dict(d or {})
    hints = typing.get_type_hints(cls)
    fmap = {f.name: f for f in dataclasses.fields(cls)}
    names = list(fmap)
    kwargs = {}
    for k, v in d.items():
        if k not in names:
            _fail_key(k, names, where)
        factory = fmap[k].default_factory
        if isinstance(v, dict) and dataclasses.is_dataclass(hints[k]) and factory is not dataclasses.MISSING:
            # a partial section keeps this phase's defaults (e.g. finetune_lm's gradual/STLR
            # recipe, pretrain's clip=1.0) for the keys it does not set
            v = {**dataclasses.asdict(factory()), **v}
        kwargs[k] = _coerce(v, hints[k], where + k)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def load_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.exists():
        raise UlmfitError(f"config file {path} does not exist")
    try:
        data = _yaml_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise UlmfitError(f"config file {path} is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UlmfitError(f"config file {path} must hold a mapping at the top level")
    return data


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    """Apply `a.b.c=value` strings (values parsed as YAML) to a nested mapping."""
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise UlmfitError(f"override {item!r} must look like key.sub=value")
        key, raw = item.split("=", 1)
        try:
            value = _yaml_load(raw) if raw != "" else None
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.strip().split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node[p] = dict(node[p])
            node = node[p]
        node[parts[-1]] = value
    return data


def save_yaml(cfg, path: str | Path) -> None:
    from ulmfit.core.checkpoint import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(to_dict(cfg), sort_keys=False))


PHASES = {"pretrain": PretrainConfig, "finetune_lm": FinetuneLMConfig, "classifier": ClassifierConfig}


def phase_config(phase: str, config_path: str | None, overrides: list[str], out: str | None = None):
    """The config of one phase: the recipe's section for it (or the whole file if it has no
    sections), then `--set` overrides, then `--out`."""
    cls = PHASES[phase]
    data = load_yaml(config_path) if config_path else {}
    if phase in data or any(k in data for k in PHASES):
        section = dict(data.get(phase) or {})
        root = data.get("out")
        if root and "out" not in section:
            section["out"] = str(Path(root) / phase)
        data = section
    rel = [o for o in overrides or [] if not o.split("=", 1)[0].startswith(phase + ".")]
    absolute = [o.split(".", 1)[1] for o in overrides or [] if o.split("=", 1)[0].startswith(phase + ".")]
    data = apply_overrides(data, rel + absolute)
    if out:
        data["out"] = out
    return from_dict(cls, data)


def recipe_config(config_path: str, overrides: list[str], out: str | None = None) -> RecipeConfig:
    data = apply_overrides(load_yaml(config_path), overrides)
    if out:
        data["out"] = out
    recipe = from_dict(RecipeConfig, {k: v for k, v in data.items() if k not in PHASES})
    root = Path(recipe.out)
    for phase, cls in PHASES.items():
        if data.get(phase) is not None:
            section = dict(data[phase])
            section.setdefault("out", str(root / phase))
            setattr(recipe, phase, from_dict(cls, section, phase + "."))
    # each phase starts from the one before it unless the recipe names another source
    if recipe.finetune_lm and not recipe.finetune_lm.pretrained and recipe.pretrain:
        recipe.finetune_lm.pretrained = recipe.pretrain.out
    if recipe.classifier and not recipe.classifier.encoder and recipe.finetune_lm:
        recipe.classifier.encoder = recipe.finetune_lm.out
    return recipe


def load_recipe(path: str, overrides: list[str] | None = None, out: str | None = None) -> RecipeConfig:
    """A recipe for notebooks: `recipe = load_recipe("configs/cpu-small.yaml", ["classifier.train.bs=32"])`."""
    return recipe_config(path, list(overrides or []), out)


def fields_help(obj, prefix: str = "") -> list[str]:
    """`key = default` lines for every field of a config (a dataclass or an instance), for --help."""
    obj = obj() if isinstance(obj, type) else obj
    lines = []
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += fields_help(value, prefix + f.name + ".")
        else:
            lines.append(f"{prefix}{f.name} = {value!r}")
    return lines
