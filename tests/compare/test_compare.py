"""`ulmfit compare` on a tiny slice of real data (WikiText-2 -> TREC-6), seconds per run."""

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from ulmfit.phases.config import recipe_config
from ulmfit.errors import UlmfitError

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("ULMFIT_DATA", ROOT.parent / "shared" / "data"))
# the classifier's epoch budget in the recipe these tests start from (gradual: one per stage summed)
BUDGET = str(int(sum(recipe_config(str(Path(__file__).resolve().parents[2] / "configs" / "cpu-small.yaml"),
                                    []).classifier.train.epochs)))
CLS_TINY = {"data": {"max_items": 240}, "train": {"bs": 16, "bptt": 24, "max_steps_per_epoch": 3}}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@pytest.fixture(scope="session")
def recipe(tmp_path_factory):
    """A tiny pretrained + fine-tuned LM (shared by every test) and a recipe that points at them."""
    from ulmfit.phases.config import recipe_config
    from ulmfit.phases import finetune_lm, pretrain

    os.environ.setdefault("OMP_NUM_THREADS", "1")
    root = tmp_path_factory.mktemp("compare")
    base = yaml.safe_load((ROOT / "configs" / "cpu-small.yaml").read_text())
    for data in [base["data"]] + [base[phase].get("data") or {} for phase in ("pretrain", "finetune_lm", "classifier")]:
        for part in ("train", "valid", "test"):
            if part in data:
                data[part] = str(DATA / Path(data[part]).relative_to("../shared/data"))
    base = _merge(base, {
        "out": str(root / "recipe"),
        "pretrain": {"data": {"max_items": 12}, "model": {"emb_size": 32, "n_hid": 48},
                     "train": {"bs": 8, "bptt": 24, "max_steps_per_epoch": 6}},
        "finetune_lm": {"data": {"max_items": 300}, "train": {"bs": 8, "bptt": 24, "max_steps_per_epoch": 3}},
        "classifier": CLS_TINY})
    (root / "lm.yaml").write_text(yaml.safe_dump(base))
    cfg = recipe_config(str(root / "lm.yaml"), [])
    pretrain(cfg.pretrain, quiet=True)
    finetune_lm(cfg.finetune_lm, quiet=True)
    tiny = {k: v for k, v in base.items() if k != "pretrain"}
    tiny["finetune_lm"] = {**tiny["finetune_lm"], "pretrained": cfg.pretrain.out}
    tiny["classifier"] = {**tiny["classifier"], "encoder": cfg.finetune_lm.out}
    tiny["compare"] = {"overrides": {"broken": ["classifier.data.text_cols=[no_such_column]"]}}
    path = root / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny))
    return path


def _rows(out: Path) -> list[dict]:
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="session")
def two_by_two(recipe, tmp_path_factory):
    from ulmfit.compare import compare

    out = tmp_path_factory.mktemp("c22") / "cmp"
    summary = compare(str(recipe), "gradual,full", 2, str(out), quiet=True)
    return out, summary


def test_tiny_compare_writes_every_file_with_the_right_rows(two_by_two):
    out, summary = two_by_two
    assert {"results.csv", "summary.md", "accuracy.png", "valid_vs_time.png", "recipe.yaml"} <= \
        {p.name for p in out.iterdir()}
    rows = _rows(out)
    assert [(r["strategy"], r["seed"]) for r in rows] == [("gradual", "0"), ("gradual", "1"), ("full", "0"),
                                                          ("full", "1")]
    for r in rows:
        assert r["status"] == "ok" and r["error"] == "" and r["train_size"] == "all"
        assert 0 <= float(r["test_accuracy"]) <= 1 and 0 <= float(r["valid_accuracy"]) <= 1
        assert float(r["wall_s"]) > 0 and int(r["best_epoch"]) >= 1
        assert (Path(r["run_dir"]) / "metrics.json").exists()
    # full gets the same epoch budget as gradual
    assert {r["epochs"] for r in rows} == {BUDGET}
    full_cfg = yaml.safe_load((out / "runs" / "full-s0-nall" / "config.yaml").read_text())
    assert full_cfg["train"]["strategy"] == "full" and full_cfg["train"]["seed"] == 0
    assert yaml.safe_load((out / "runs" / "gradual-s1-nall" / "config.yaml").read_text())["train"]["seed"] == 1
    md = (out / "summary.md").read_text()
    assert "| 1 | " in md and "gradual" in md and "full" in md and "±" in md
    assert summary["runs"] == 4 and summary["failed"] == 0
    assert {a["strategy"] for a in summary["ranking"]} == {"gradual", "full"}
    # full paired with gradual (the first strategy) seed for seed
    acc = {(r["strategy"], int(r["seed"])): float(r["test_accuracy"]) for r in rows}
    (pair,) = summary["paired"]
    assert (pair["ref"], pair["strategy"], pair["n"]) == ("gradual", "full", 2)
    assert pair["mean_diff"] == pytest.approx(sum(acc["full", s] - acc["gradual", s] for s in (0, 1)) / 2)
    assert "Paired on the same seeds against `gradual`" in md and "| full | 2 |" in md
    json.dumps(summary)  # the CLI prints it


def test_same_seed_same_numbers(recipe, two_by_two, tmp_path):
    from ulmfit.compare import compare

    out, _ = two_by_two
    compare(str(recipe), "full", [1], str(tmp_path / "again"), quiet=True)
    a = json.loads((out / "runs" / "full-s1-nall" / "metrics.json").read_text())
    b = json.loads((tmp_path / "again" / "runs" / "full-s1-nall" / "metrics.json").read_text())
    for k in ("test_accuracy", "valid_accuracy", "valid_macro_f1", "test_confusion_matrix"):
        assert a[k] == b[k], k


def test_resume_skips_finished_runs(recipe, two_by_two, capsys):
    from ulmfit.compare import compare

    out, _ = two_by_two
    runs = out / "runs"
    mtimes = {p.name: (p / "metrics.json").stat().st_mtime_ns for p in runs.iterdir()}
    (runs / "full-s1-nall" / "metrics.json").unlink()  # as if interrupted during this run
    summary = compare(str(recipe), "gradual,full", 2, str(out))
    err = capsys.readouterr().err
    assert err.count("(reused)") == 3
    rows = _rows(out)
    assert [r["reused"] for r in rows] == ["True", "True", "True", "False"] and summary["failed"] == 0
    for name, t in mtimes.items():
        now = (runs / name / "metrics.json").stat().st_mtime_ns
        assert (now == t) == (name != "full-s1-nall"), name
    assert len((runs / "full-s1-nall" / "metrics.jsonl").read_text().splitlines()) == int(BUDGET)  # afresh


def test_failing_run_is_recorded_and_the_rest_go_on(recipe, tmp_path):
    from ulmfit.compare import compare

    out = tmp_path / "cmp"
    summary = compare(str(recipe), "broken,head_only", 1, str(out), quiet=True)
    rows = {r["strategy"]: r for r in _rows(out)}
    assert rows["broken"]["status"] == "failed" and "no_such_column" in rows["broken"]["error"]
    assert rows["head_only"]["status"] == "ok" and rows["head_only"]["test_accuracy"] != ""
    assert (out / "runs" / "broken-s0-nall" / "error.txt").exists()
    assert summary["failed"] == 1 and "Failed runs" in (out / "summary.md").read_text()
    assert (out / "accuracy.png").exists()


def test_low_shot_and_ablations(recipe, tmp_path):
    """Two labelled-set sizes, the LM ablation that skips phase 2 and the random-encoder baseline."""
    from ulmfit.compare import compare

    out = tmp_path / "low"
    summary = compare(str(recipe), "gradual", 1, str(out), train_sizes="30,all",
                      ablations="no_lm_finetuning,no_pretraining", quiet=True)
    rows = _rows(out)
    assert summary["failed"] == 0, [r["error"] for r in rows]
    assert [(r["strategy"], r["train_size"]) for r in rows] == [
        ("gradual", "30"), ("no_lm_finetuning", "30"), ("no_pretraining", "30"),
        ("gradual", "all"), ("no_lm_finetuning", "all"), ("no_pretraining", "all")]
    n = {(r["strategy"], r["train_size"]): int(r["n_train"]) for r in rows}
    assert 28 <= n[("gradual", "30")] <= 36 and n[("gradual", "all")] > n[("gradual", "30")]
    assert (out / "lowshot.png").exists() and "Low-shot" in (out / "summary.md").read_text()
    cfg = yaml.safe_load((out / "runs" / "no_pretraining-s0-n30" / "config.yaml").read_text())
    assert cfg["encoder"] is None and cfg["model"]["emb_size"] == 32  # same architecture as the LM
    assert cfg["data"]["train_size"] == 30
    enc = yaml.safe_load((out / "runs" / "no_lm_finetuning-s0-nall" / "config.yaml").read_text())["encoder"]
    assert Path(enc).name == "pretrained-encoder"


def test_bad_strategy_and_seeds_fail_clearly(recipe, tmp_path):
    from ulmfit.compare import compare

    with pytest.raises(UlmfitError, match="did you mean 'gradual'"):
        compare(str(recipe), "gradul", 1, str(tmp_path))
    with pytest.raises(UlmfitError, match="--seeds"):
        compare(str(recipe), "full", "three", str(tmp_path))
    with pytest.raises(UlmfitError, match="train size"):
        compare(str(recipe), "full", 1, str(tmp_path), train_sizes="ten")


def test_strategy_plans_are_config_changes():
    """Each strategy is a nested change to the recipe's sections (typed values, no --set strings):
    `full` gets the recipe's epoch budget at the all-groups LR, chain-thaw's lone groups the
    all-groups LR exactly (raised by the factor the core divides it by)."""
    from ulmfit.compare.text import _chain_thaw_changes, merge, strategy_plan
    from ulmfit.phases.config import ClassifierConfig, from_dict

    clf = from_dict(ClassifierConfig, {"train": {"epochs": [1, 1, 1, 6], "lr": [0.04, 0.02, 0.01, 0.005],
                                                 "lr_factor": 2.0}})
    full = strategy_plan("full", clf, ["classifier.train.bs=8", "finetune_lm.train.epochs=[1, 2]"])
    assert full["classifier"] == {"train": {"strategy": "full", "epochs": 9, "lr": 0.005}}
    assert full["classifier_sets"] == ["train.bs=8"] and full["finetune_sets"] == ["train.epochs=[1, 2]"]
    assert strategy_plan("lm_no_discriminative", clf, [])["finetune"] == {"train": {"lr_factor": None}}
    chain = _chain_thaw_changes(strategy_plan("chain_thaw", clf, []), clf, None)
    n = 5  # small AWD-LSTM: embedding, 3 LSTMs, head
    assert chain["train"]["lr"] == [0.04] + [0.005 * 2.0 ** (n - 1 - i) for i in range(n - 1)] + [0.005]
    assert chain["train"]["epochs"] == round(9 / (n + 1), 4)
    assert merge({"a": {"b": 1, "c": 2}}, {"a": {"b": 3}}) == {"a": {"b": 3, "c": 2}}
    with pytest.raises(UlmfitError, match="must start with classifier. or finetune_lm."):
        strategy_plan("full", clf, ["train.bs=8"])
