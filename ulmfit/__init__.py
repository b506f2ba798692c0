"""ulmfit: ULMFiT-style transfer learning on one model-agnostic core.

Notebook use, one line a phase::

    import ulmfit
    recipe = ulmfit.load_recipe("configs/cpu-small.yaml")
    ulmfit.pretrain(recipe.pretrain)
    ulmfit.finetune_lm(recipe.finetune_lm)
    clf = ulmfit.train_classifier(recipe.classifier)      # metrics dict + .predict
    clf.predict(["How far is the moon ?"])
    ulmfit.lr_find("classifier", recipe.classifier)      # plots itself inline
"""

__version__ = "0.1.0"

from ulmfit.errors import UlmfitError  # noqa: E402

_LAZY = {
    "load_recipe": ("ulmfit.phases.config", "load_recipe"),
    "pretrain": ("ulmfit.phases.backends", "pretrain"),
    "finetune_lm": ("ulmfit.phases.backends", "finetune_lm"),
    "train_classifier": ("ulmfit.phases.backends", "train_classifier"),
    "lr_find": ("ulmfit.phases.backends", "lr_find"),
    "run_recipe": ("ulmfit.phases.recipe", "run_recipe"),
    "evaluate": ("ulmfit.phases.use", "evaluate"),
    "load_classifier": ("ulmfit.phases.backends", "load_classifier"),
    "TextClassifier": ("ulmfit.text.awd_lstm.text_classifier", "TextClassifier"),
}


def __getattr__(name):  # import torch-heavy modules only when used
    if name in _LAZY:
        import importlib

        mod, attr = _LAZY[name]
        return getattr(importlib.import_module(mod), attr)
    raise AttributeError(f"module 'ulmfit' has no attribute {name!r}")


__all__ = ["UlmfitError", "__version__", *_LAZY]
