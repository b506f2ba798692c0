"""`ulmfit run --resume`: a recipe stopped inside an epoch (by SIGTERM here) continues from the
checkpoint saved there and ends with the same weights as a run never stopped."""

import json
import shutil
import signal
import subprocess
import sys
import time

import torch

from cli_helpers import ENV, ROOT, TINY


def _run(out, *extra):
    args = [sys.executable, "-m", "cli.main", "run", "configs/cpu-small.yaml", "--out", str(out), "--quiet",
            *[a for s in TINY for a in ("--set", s)], *extra]
    # background jobs start with SIGINT ignored: give the child the default so Ctrl-C reaches it
    return subprocess.Popen(args, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_run_resume_continues_inside_an_epoch_to_the_same_weights(tiny_run, tmp_path):
    ref, _ = tiny_run
    out = tmp_path / "run"
    shutil.copytree(ref / "pretrain", out / "pretrain")  # a finished phase: skipped
    # a checkpoint after (nearly) every step: checkpoints do not change what is trained
    every_step = ["--set", "finetune_lm.train.checkpoint_minutes=0.00001"]
    p = _run(out, *every_step)
    ckpts = out / "finetune_lm.partial" / "checkpoints"
    deadline = time.time() + 300
    while not any(c.name.count("-") == 2 for c in ckpts.glob("ckpt-*")) and p.poll() is None \
            and time.time() < deadline:
        time.sleep(0.02)
    assert p.poll() is None, "the run finished before it could be interrupted"
    p.send_signal(signal.SIGTERM)  # `kill`, or a scheduler taking the machine back: stops as Ctrl-C does
    _, err = p.communicate(timeout=120)
    lines = [x for x in err.strip().splitlines() if x.strip()]
    assert p.returncode == 143 and len(lines) == 1 and "Traceback" not in err, err[-2000:]
    assert lines[0].startswith("interrupted at epoch") and lines[0].endswith("resume with --resume")
    assert not (out / "classifier").exists()

    again = _run(out, *every_step, "--resume")
    _, err = again.communicate(timeout=600)
    assert again.returncode == 0, err[-3000:]
    for phase in ("finetune_lm", "classifier"):  # byte for byte (the files hold one metadata key)
        assert (out / phase / "model.safetensors").read_bytes() == (ref / phase / "model.safetensors").read_bytes()
    assert not (out / "finetune_lm.partial").exists()
    for phase in ("finetune_lm", "classifier"):  # time over both processes, not just the second one's
        rows = [json.loads(x) for x in (out / phase / "metrics.jsonl").read_text().splitlines() if x.strip()]
        m = json.loads((out / phase / "metrics.json").read_text())
        assert m["train_s"] == round(rows[-1]["elapsed_s"], 2) > 0 and m["wall_s"] > 0


def _leave_checkpoint(folder, partial=None):
    """A checkpoint after epoch 1 (``partial``: inside epoch 2) in ``folder``, as a stopped run leaves."""
    from ulmfit.core import checkpoint as ckpt

    model = torch.nn.Linear(2, 2)
    ckpt.save_training_state(folder, 1, model, torch.optim.SGD(model.parameters(), lr=0.1), [], None, 0,
                             partial=partial)


def test_run_without_resume_says_it_drops_the_checkpoint(tmp_path):
    from ulmfit.phases.runs import begin_run

    out = tmp_path / "clf"
    _leave_checkpoint(tmp_path / "clf.partial", {"step": 5, "loss_sum": 1.0, "epoch_s": 1.0, "gn_sum": 0.0,
                                                 "gn_n": 0, "gn_max": 0.0})
    assert (tmp_path / "clf.partial" / "checkpoints" / "ckpt-1-5").is_dir()
    import contextlib
    import io

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        begin_run(out, resume=False, force=False)
    assert "checkpoint ckpt-1-5" in err.getvalue() and "--resume" in err.getvalue()
    assert not (tmp_path / "clf.partial" / "checkpoints").exists()


def test_run_resume_starts_over_a_phase_that_cannot_resume(tmp_path, monkeypatch):
    """A transformers classifier keeps epoch checkpoints but cannot continue from them: `run --resume`
    starts that phase over instead of failing; an AWD-LSTM phase resumes, also from a checkpoint
    written in place (several processes write no staging folder)."""
    from ulmfit.phases import recipe
    from ulmfit.phases.config import recipe_config

    calls = []

    def fake(name):
        return lambda cfg, quiet, force, resume: calls.append((name, resume)) or {}

    for name in ("pretrain", "finetune_lm", "train_classifier"):
        monkeypatch.setattr(recipe, name, fake(name))

    cfg = recipe_config("configs/trec6-minilm-lowshot.yaml", ["finetune_lm=null"], str(tmp_path / "t"))
    _leave_checkpoint(tmp_path / "t" / "classifier.partial")
    recipe.run_recipe(cfg, quiet=True, resume=True)
    assert calls == [("train_classifier", False)]

    calls.clear()
    cfg = recipe_config("configs/cpu-small.yaml", [], str(tmp_path / "a"))
    _leave_checkpoint(tmp_path / "a" / "pretrain.partial")
    _leave_checkpoint(tmp_path / "a" / "finetune_lm")  # in place, as under torchrun
    recipe.run_recipe(cfg, quiet=True, resume=True)
    assert calls == [("pretrain", True), ("finetune_lm", True), ("train_classifier", False)]


def test_force_resume_continues_an_interrupted_forced_run(tmp_path):
    from ulmfit.phases.runs import check_finished

    (tmp_path / "metrics.json").write_text("{}")
    check_finished(tmp_path, resume=True, force=True)  # no error: the forced re-run's checkpoint continues
