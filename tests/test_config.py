from pathlib import Path

import pytest

from ulmfit.config import PretrainConfig, apply_overrides, from_dict, phase_config, recipe_config
from ulmfit.errors import UlmfitError

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")
                                        if p.stem != "vision-digits"))
def test_every_recipe_parses(name):
    r = recipe_config(str(ROOT / "configs" / f"{name}.yaml"), [])
    assert r.pretrain or r.finetune_lm or r.classifier
    if r.finetune_lm and r.pretrain:
        assert r.finetune_lm.pretrained == r.pretrain.out  # phases are wired together
    if r.classifier and r.finetune_lm:
        assert r.classifier.encoder == r.finetune_lm.out


def test_overrides_and_types():
    d = apply_overrides({}, ["train.epochs=[1, 2]", "train.lr=0.01", "data.text_cols=title,body", "out=x"])
    cfg = from_dict(PretrainConfig, d)
    assert cfg.train.epochs == [1, 2] and cfg.train.lr == 0.01 and cfg.data.text_cols == ["title", "body"]
    assert from_dict(PretrainConfig, {"train": {"weight_decay": 1}}).train.weight_decay == 1.0
    with pytest.raises(UlmfitError, match="did you mean 'bptt'"):
        from_dict(PretrainConfig, {"train": {"bpt": 3}})
    with pytest.raises(UlmfitError, match="'train.bs' must be an integer"):
        from_dict(PretrainConfig, {"train": {"bs": "many"}})
    with pytest.raises(UlmfitError, match="must look like"):
        apply_overrides({}, ["train.bs"])


def test_phase_section_and_out(tmp_path):
    cfg = phase_config("classifier", str(ROOT / "configs" / "cpu-small.yaml"),
                       ["train.bs=8", "classifier.train.seed=3"], str(tmp_path))
    assert cfg.train.bs == 8 and cfg.train.seed == 3 and cfg.out == str(tmp_path)
    assert cfg.train.strategy == "gradual"
