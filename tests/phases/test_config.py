from pathlib import Path

import pytest

from ulmfit.phases.config import PretrainConfig, TrainSection, apply_overrides, from_dict, phase_config, recipe_config
from ulmfit.errors import UlmfitError

ROOT = Path(__file__).resolve().parents[2]


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
    # YAML 1.1 would read these as strings; a recipe or --set means numbers
    d = apply_overrides({}, ["train.lr=[1e-3, 3E-4]", "train.weight_decay=1e-2"])
    assert d["train"]["lr"] == [1e-3, 3e-4] and d["train"]["weight_decay"] == 0.01
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


def test_lm_optimizer_and_bptt_settings_reach_the_trainer(tmp_path):
    """`train.eps` becomes Adam's epsilon and `train.variable_bptt=false` gives fixed-length
    batches (fastai's LMDataLoader), through the same helpers the LM phases use."""
    import torch

    from ulmfit.core.groups import LayerGroups
    from ulmfit.text.awd_lstm.lm_train import make_streams
    from ulmfit.text.tokenize.tokenizer import TextTokenizer

    cfg = from_dict(PretrainConfig, apply_overrides({}, ["train.eps=1e-5", "train.variable_bptt=false"]))
    assert cfg.train.trainer_config(quiet=True).eps == 1e-5
    texts = [f"sentence number {i} is here ." for i in range(400)]
    tok = TextTokenizer.train(texts, min_freq=1)
    lens = {}
    for vb in (True, False):
        train, _, _ = make_streams(tok, texts, texts[:50], tmp_path / str(vb), bs=4, bptt=20, seed=0,
                                   variable_bptt=vb)
        lens[vb] = [x.shape[1] for x, _ in train]
    assert set(lens[False][:-1]) == {20}
    assert set(lens[True]) != {20}
    model = torch.nn.Linear(2, 2)
    opt = LayerGroups(model, [model]).make_optimizer([1e-3], "adam", 0.0, (0.9, 0.99), 1e-5)
    assert opt.param_groups[0]["eps"] == 1e-5


def test_partial_section_keeps_the_phase_defaults():
    """A recipe that sets only some train keys keeps the phase's own defaults for the rest
    (finetune_lm: gradual + STLR; pretrain: clip 1.0), not the generic TrainSection ones."""
    from ulmfit.phases.config import FinetuneLMConfig, TrainSection

    ft = from_dict(FinetuneLMConfig, {"train": {"lr": [0.02, 0.002]}})
    assert ft.train.strategy == "gradual" and ft.train.schedule == "stlr" and ft.train.epochs == [1, 3]
    assert ft.train.lr == [0.02, 0.002]
    pre = from_dict(PretrainConfig, {"train": {"epochs": 2}}).train
    assert pre.clip == 1.0 and pre.eps is None and pre.trainer_config(quiet=True).eps == 1e-6
    assert from_dict(PretrainConfig, {"train": {"clip": 0.5}}).train.clip == 0.5
    assert from_dict(PretrainConfig, {"train": {"clip": None}}).train.clip is None
    assert TrainSection().clip == 0.25  # classifier and LM fine-tuning clip at AWD-LSTM's 0.25


def test_pretrain_cycles_beta1_as_fastai_text_learner():
    """pretrain's one-cycle moves Adam's beta1 0.8 -> 0.7 -> 0.8 (fastai's TextLearner) and warms up
    over 40% of the steps; both reach the schedule the trainer builds, an explicit schedule_args or
    train.pct_start wins, and schedules other than one-cycle get neither (they would refuse them)."""
    from ulmfit.phases.config import PRETRAIN_MOMS, PRETRAIN_PCT_START, ClassifierConfig, TrainSection
    from ulmfit.core import make_schedule
    from ulmfit.phases.common import stages_for as _stages

    pre = from_dict(PretrainConfig, {"train": {"epochs": 1}}).train
    assert pre.moms == PRETRAIN_MOMS == [0.8, 0.7, 0.8]
    (stage,) = _stages(pre, 4)
    sched = make_schedule(stage.schedule, **stage.schedule_args)
    total = 100  # pretrain warms up over pct_start 0.4 of it (docs/results.md): beta1 lowest, LR at its peak at 40
    assert pre.pct_start == PRETRAIN_PCT_START == 0.4
    assert sched.momentum(0, total) == pytest.approx(0.8)
    assert sched.momentum(40, total) == pytest.approx(0.7)
    assert sched.momentum(total, total) == pytest.approx(0.8)
    assert sched.lr_mult(40, total) == pytest.approx(1.0) and sched.lr_mult(39, total) < 1.0
    assert sched.lr_mult(25, total) == pytest.approx(0.7037, abs=1e-4)  # 62.5% of the way up the cosine warm-up
    assert TrainSection().schedule_kwargs() == {}  # generic default: the schedule's (0.95, 0.85, 0.95)
    assert from_dict(ClassifierConfig, {}).train.schedule_kwargs() == {}  # classifiers keep it (docs/results.md)
    own = from_dict(PretrainConfig, {"train": {"schedule_args": {"moms": [0.9, 0.8, 0.9], "pct_start": 0.3}}}).train
    assert own.schedule_kwargs() == {"moms": [0.9, 0.8, 0.9], "pct_start": 0.3}
    assert from_dict(PretrainConfig, {"train": {"pct_start": 0.25}}).train.schedule_kwargs()["pct_start"] == 0.25
    stlr = from_dict(PretrainConfig, {"train": {"schedule": "stlr"}}).train
    assert stlr.schedule_kwargs() == {}
    make_schedule("stlr", **stlr.schedule_kwargs())
    spelled = from_dict(PretrainConfig, {"train": {"schedule": " One-Cycle"}}).train
    assert spelled.schedule_kwargs() == {"moms": [0.8, 0.7, 0.8], "pct_start": 0.4}  # make_schedule's key
    assert make_schedule(spelled.schedule, **spelled.schedule_kwargs()).momentum(0, 100) == pytest.approx(0.8)


def test_yaml_no_stays_a_string_and_true_false_stay_booleans():
    """`--set train.mixed_precision=no` (docs/configuration.md) is the string "no", not YAML 1.1's False; only
    true/false are booleans, and numbers like 1e-5 are numbers."""
    d = apply_overrides({}, ["train.mixed_precision=no", "train.variable_bptt=false", "train.eps=1e-5",
                             "data.multi_label=true", "train.schedule=on"])
    cfg = from_dict(PretrainConfig, d)
    assert cfg.train.mixed_precision == "no" and cfg.train.variable_bptt is False and cfg.train.eps == 1e-5
    assert cfg.data.multi_label is True and cfg.train.schedule == "on"
    with pytest.raises(UlmfitError, match="true or false"):
        from_dict(PretrainConfig, apply_overrides({}, ["train.variable_bptt=yes"]))


def test_configuration_doc_is_current():
    """docs/configuration.md is generated from the config classes; regenerate it with
    `python scripts/gen_config_docs.py` after changing a field."""
    from pathlib import Path

    from ulmfit.phases.config_docs import field_comments, render

    doc = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
    assert doc.read_text(encoding="utf-8") == render(), "stale: run python scripts/gen_config_docs.py"
    assert field_comments(TrainSection)["moms"].startswith("one_cycle: Adam's beta1")
    assert "| `train.lr_factor` | `1.0` |" in render()  # the classifier's default: no discriminative factor


def test_recipe_names_its_data_once():
    """A recipe's top-level `data` reaches phases 2 and 3 (not pretraining's corpus), so one
    `--set data.train=... --set data.test=...` points a shipped recipe at a user's files."""
    recipe = ROOT / "configs" / "cpu-small.yaml"
    r = recipe_config(str(recipe), ["data.train=mine.csv", "data.test=mine_test.csv", "data.text_cols=body"])
    assert r.finetune_lm.data.train == r.classifier.data.train == "mine.csv"
    assert r.classifier.data.test == "mine_test.csv" and r.classifier.data.text_cols == ["body"]
    assert r.pretrain.data.train.endswith("wikitext-2/train.txt")
    assert r.classifier.data.label_col == "label" and r.data.train == "mine.csv"
    # a section's own --set wins over the recipe-wide one; single-phase commands read the recipe's data too
    r = recipe_config(str(recipe), ["data.train=mine.csv", "classifier.data.train=labelled.csv"])
    assert r.finetune_lm.data.train == "mine.csv" and r.classifier.data.train == "labelled.csv"
    c = phase_config("classifier", str(recipe), ["data.train=mine.csv"])
    assert c.data.train == "mine.csv" and c.data.test.endswith("trec6/test.csv")
    assert phase_config("finetune_lm", str(recipe), []).data.train.endswith("trec6/train.csv")
    with pytest.raises(UlmfitError, match="data.trian.*did you mean 'train'"):
        recipe_config(str(recipe), ["data.trian=x.csv"])


def test_section_data_wins_over_the_recipe_data(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text("data: {train: a.csv, test: t.csv}\nfinetune_lm: {data: {train: unlabelled.txt}}\n"
                 "classifier: {data: {train_size: 50}}\n")
    r = recipe_config(str(p), [])
    assert r.finetune_lm.data.train == "unlabelled.txt" and r.classifier.data.train == "a.csv"
    assert r.classifier.data.train_size == 50 and r.classifier.data.test == "t.csv"


def test_run_out_puts_every_phase_under_it(tmp_path):
    """`ulmfit run RECIPE --out DIR` writes every phase under DIR, even where a section names its own
    `out` (trec6.yaml shares its LM as runs/wikitext2-small when run without --out)."""
    recipe = ROOT / "configs" / "trec6.yaml"
    assert recipe_config(str(recipe), []).pretrain.out == "runs/wikitext2-small"
    r = recipe_config(str(recipe), [], out=str(tmp_path / "x"))
    for phase in ("pretrain", "finetune_lm", "classifier"):
        assert getattr(r, phase).out == str(tmp_path / "x" / phase)
    assert r.finetune_lm.pretrained == r.pretrain.out and r.classifier.encoder == r.finetune_lm.out


def test_phase_defaults_are_the_measured_recipe():
    """Without a recipe each phase uses the best settings measured (the quickstart's): no
    discriminative factor for the classifier or from-scratch pretraining."""
    from ulmfit.phases.config import ClassifierConfig, FinetuneLMConfig

    clf, ft, pre = ClassifierConfig().train, FinetuneLMConfig().train, PretrainConfig().train
    assert clf.lr_factor == 1.0 and clf.epochs == [1, 1, 1, 6] and clf.lr == [0.04, 0.02, 0.01, 0.005]
    assert ft.lr_factor == 2.6 and ft.epochs == [1, 3] and ft.lr == [0.01, 0.003] and ft.weight_decay == 0.1
    assert pre.lr_factor is None and PretrainConfig().model.drop_mult == 0.5


def test_help_and_reading_recipes_do_not_load_torch():
    """`ulmfit --help` (every command's field list) and reading each text recipe, bad values included,
    stay light: torch and transformers are imported only when a phase runs (--help took 4.6 s when a
    recipe check imported them, 0.5 s without)."""
    import subprocess
    import sys

    code = (
        "import glob, sys\n"
        "import cli.main\n"
        "from ulmfit.errors import UlmfitError\n"
        "from ulmfit.phases.config import recipe_config\n"
        "for f in sorted(glob.glob('configs/*.yaml')):\n"
        "    if 'vision' not in f:\n"
        "        recipe_config(f, [])\n"
        "for bad in ('classifier.model.long_docs=chunks', 'classifier.contrastive.loss=triplet',\n"
        "            'pretrain.model.vectors.layout=stack'):\n"
        "    try:\n"
        "        recipe_config('configs/fewshot-minilm.yaml', [bad])\n"
        "        raise SystemExit('accepted ' + bad)\n"
        "    except UlmfitError as e:\n"
        "        assert 'is not one of' in str(e), e\n"
        "print(sorted(m for m in ('torch', 'transformers', 'sklearn') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
