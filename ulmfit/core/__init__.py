"""The model-agnostic core: layer groups, schedules, strategies, LR finder, the training loop.

Nothing here imports from ulmfit.text or ulmfit.vision: a domain supplies a model split into
layer groups, a loss and batches.
"""

from ulmfit.core.checkpoint import load_checkpoint, save_checkpoint
from ulmfit.core.groups import LayerGroups, lr_spec_to_list
from ulmfit.core.lr_finder import LRFinderResult, lr_find
from ulmfit.core.schedules import make_schedule
from ulmfit.core.seed import set_seed
from ulmfit.core.strategies import Stage, build_strategy
from ulmfit.core.trainer import Hooks, TrainConfig, Trainer

__all__ = [
    "LayerGroups", "lr_spec_to_list", "make_schedule", "Stage", "build_strategy", "Trainer",
    "TrainConfig", "Hooks", "lr_find", "LRFinderResult", "set_seed", "save_checkpoint",
    "load_checkpoint",
]
