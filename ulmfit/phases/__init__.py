"""The phases as plain functions of a config, and the commands built on their outputs.

    config.py    one dataclass per phase section; YAML in, resolved YAML saved with every output
    runs.py      run folders: the manifest (run.json) and the one function that reads a folder's kind
    common.py    plumbing every phase shares (logging, LM corpora, finishing a phase's outputs)
    lm.py        phases 1 and 2 for AWD-LSTMs;  classifier.py  phase 3 for AWD-LSTMs
    transformers.py  phases 2 and 3 for transformers checkpoints;  vision.py  `train-vision`
    backends.py  the backend table (model.type -> what each phase does) and the phase entry points
    use.py       evaluate, predict, generate;  recipe.py  `ulmfit run`;  ensemble.py  `ulmfit ensemble`

Names are imported lazily, so ``import ulmfit.phases.config`` (the CLI's --help) stays light.
"""

_LAZY = {
    "pretrain": "backends", "finetune_lm": "backends", "train_classifier": "backends", "lr_find": "backends",
    "load_classifier": "backends", "load_language_model": "backends", "RunResult": "backends",
    "evaluate": "use", "predict_cli": "use", "generate": "use",
    "run_recipe": "recipe", "backward_recipe": "recipe", "make_ensemble": "ensemble",
    "load_recipe": "config", "phase_config": "config", "recipe_config": "config",
    "read_run": "runs",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"ulmfit.phases.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'ulmfit.phases' has no attribute {name!r}")


__all__ = list(_LAZY)
