"""Vision on the shared core: torchvision CNNs split into layer groups, augmentation, precomputed
activations and TTA. Needs the `vision` extra (torchvision); importing this package without it
raises a UlmfitError that says what to install."""

try:
    import torchvision  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    from ulmfit.errors import UlmfitError

    raise UlmfitError("ulmfit.vision needs torchvision: pip install 'ulmfit[vision]'") from None

from ulmfit.vision.backbone import (VisionModel, create_vision_model, load_run_weights,
                                    load_vision_model)
from ulmfit.vision.data import (AugmentConfig, ImageSet, eval_transform, few_shot, from_arrays,
                                from_folder, load_builtin, train_transform)
from ulmfit.vision.precompute import compute_features, precompute
from ulmfit.vision.train import evaluate_tta, predict, train_vision

__all__ = [
    "VisionModel", "create_vision_model", "load_run_weights", "load_vision_model", "AugmentConfig",
    "ImageSet", "eval_transform", "train_transform", "few_shot", "from_arrays", "from_folder",
    "load_builtin", "compute_features", "precompute", "evaluate_tta", "predict", "train_vision",
]
