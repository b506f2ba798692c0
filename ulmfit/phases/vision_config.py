"""The vision recipe (``modality: image``, configs/vision-digits.yaml) as typed sections.

The same checks as the text recipes: an unknown key gets a did-you-mean, a wrong type names the
field and the type wanted, and ``train`` is the shared :class:`TrainSection` (so the trainer's
settings come from ``TrainSection.trainer_config`` as for every backend).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ulmfit.phases.config import TrainSection
from ulmfit.phases.config_io import apply_overrides, from_dict, load_yaml


@dataclass
class VisionModelSection:
    arch: str = "resnet18"             # any torchvision classifier: resnet18/34/50, resnext, regnet, mobilenet...
    in_channels: int = 3               # 1 for grayscale (the first conv is adapted)
    hidden: int = 256                  # concat-pool head: hidden layer size
    dropout: float = 0.5               # head dropout
    train_bn: bool = True              # BatchNorm of frozen groups keeps training (fastai's default)


@dataclass
class AugmentSection:
    size: int = 224                    # images are resized to size x size
    crop_scale: list[float] = field(default_factory=lambda: [0.35, 1.0])  # RandomResizedCrop area fraction
    crop_ratio: list[float] = field(default_factory=lambda: [0.75, 4 / 3])  # RandomResizedCrop aspect ratios
    flip: bool = True                  # random horizontal flips
    rotate: float = 10.0               # degrees, either way
    brightness: float = 0.2            # colour jitter
    contrast: float = 0.2              # colour jitter
    normalize: Any = "data"            # imagenet | data (from the training images) | [[mean], [std]]


@dataclass
class VisionPretrainSection:
    data: str = "mnist5k"              # a built-in image set (mnist5k, sklearn-digits)
    valid_size: int = 500              # images held out for validation
    epochs: float = 4                  # epochs of whole-network training
    lr: float = 0.003                  # learning rate
    schedule: str = "one_cycle"        # schedule of the run
    batch_size: int = 64               # batch size


@dataclass
class SgdrSection:
    cycle_len: float = 1               # epochs of the first cycle
    cycle_mult: float = 2              # each cycle is this many times longer
    cycles: int = 3                    # number of cycles


@dataclass
class FastaiRecipeSection:
    frozen_epochs: float = 2           # augmented epochs with the body frozen
    sgdr: SgdrSection = field(default_factory=SgdrSection)
    lr: Any = "auto"                   # LR of the unfrozen SGDR stage (auto: the LR finder's suggestion)


@dataclass
class TransferSection:
    data: str = "sklearn-digits"       # the built-in target image set
    test_size: int = 797               # fixed held-out test images
    valid_size: int = 200              # `compare` only: images for per-epoch curves (no selection)
    per_class: list[int] = field(default_factory=lambda: [10, 50])  # labelled images per class
    batch_size: int = 32               # batch size
    epochs: float = 12                 # epoch budget of every method
    lr: float = 0.003                  # top-group LR of the live stages
    lr_factor: float | None = 3.0      # discriminative LRs: each lower group gets lr / lr_factor
    schedule: str = "one_cycle"        # schedule of the live stages
    precompute: dict = field(default_factory=lambda: {"epochs": 10, "lr": "auto", "schedule": "one_cycle"})  # head stage on cached features
    methods: list[str] = field(default_factory=lambda: ["scratch", "head_only", "full", "gradual", "chain_thaw",
                                                        "fastai"])  # methods `train-vision` compares
    fastai_recipe: FastaiRecipeSection = field(default_factory=FastaiRecipeSection)


@dataclass
class TtaSection:
    n: int = 4                         # augmented copies per test image (0: no TTA)
    beta: float = 0.25                 # blend: (1 - beta) * mean(augmented) + beta * plain


@dataclass
class VisionRecipe:
    modality: str = "image"            # marks a vision recipe
    out: str = "runs/vision"           # output folder
    model: VisionModelSection = field(default_factory=VisionModelSection)
    augment: AugmentSection = field(default_factory=AugmentSection)
    pretrain: VisionPretrainSection = field(default_factory=VisionPretrainSection)
    transfer: TransferSection = field(default_factory=TransferSection)
    lr_find: dict = field(default_factory=dict)  # LR finder arguments (num_it, end_lr, ...)
    tta: TtaSection = field(default_factory=TtaSection)
    # vision trains in fp32 unless the recipe says otherwise
    train: TrainSection = field(default_factory=lambda: TrainSection(mixed_precision="no"))
    compare: dict | None = None        # `ulmfit compare` settings (strategies, seeds, train_sizes, out)


def vision_recipe(data: dict) -> VisionRecipe:
    """A vision recipe mapping (after overrides) as typed, checked sections."""
    return from_dict(VisionRecipe, data)


def load_vision_recipe(path: str, overrides: list[str] | None = None) -> VisionRecipe:
    return vision_recipe(apply_overrides(load_yaml(path), list(overrides or [])))
