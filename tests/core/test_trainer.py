import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from core_helpers import make_trainer
from ulmfit.core import Stage, build_strategy, lr_find
from ulmfit.core import checkpoint as ckpt
from ulmfit.errors import Interrupted, UlmfitError


def weights(model):
    return [p.detach().clone() for p in model.parameters()]


def test_fit_learns_and_writes_metrics(tmp_path):
    t = make_trainer(out_dir=tmp_path)
    hist = t.fit(build_strategy("full", 3, epochs=3, lr=0.1, schedule="one_cycle"))
    assert len(hist) == 3
    assert hist[-1]["valid_accuracy"] > 0.8
    assert hist[-1]["valid_loss"] < hist[0]["valid_loss"]
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]
    assert (tmp_path / "metrics.csv").read_text().startswith("epoch,")
    assert ckpt.latest_checkpoint(tmp_path / "checkpoints").name == "ckpt-3"


def test_same_seed_same_metrics():
    a = make_trainer().fit(build_strategy("gradual", 3, epochs=[1, 1, 1], lr=1e-2))
    b = make_trainer().fit(build_strategy("gradual", 3, epochs=[1, 1, 1], lr=1e-2))
    assert [r["valid_loss"] for r in a] == [r["valid_loss"] for r in b]
    assert [r["train_loss"] for r in a] == [r["train_loss"] for r in b]


def test_gradual_unfreezing_leaves_frozen_groups_bit_identical():
    t = make_trainer()
    g = t.groups
    start = weights(t.model)
    stages = build_strategy("gradual", 3, epochs=[1, 1], lr=1e-2)
    t.fit(stages[:1])  # head only
    now = weights(t.model)
    p0, p1, p2 = (set(map(id, grp)) for grp in g.params)
    for b, a, p in zip(start, now, t.model.parameters()):
        assert torch.equal(b, a) == (id(p) not in p2)


def crash(trainer, method: str, stages, n_calls: int) -> str:
    """Run `stages` with the trainer's `method` raising KeyboardInterrupt at call n_calls + 1 (a kill);
    returns the Interrupted message."""
    orig, calls = getattr(trainer, method), {"n": 0}

    def wrapped(*a, **k):
        if calls["n"] == n_calls:
            raise KeyboardInterrupt
        calls["n"] += 1
        return orig(*a, **k)

    setattr(trainer, method, wrapped)
    with pytest.raises(Interrupted) as e:
        trainer.fit(stages)
    return str(e.value)


def crash_after(trainer, stages, n_epochs):
    """Kill the run once n_epochs epochs are done."""
    assert crash(trainer, "_train_epoch", stages, n_epochs) == (
        f"interrupted at epoch {n_epochs + 1} step 0; the checkpoint ckpt-{n_epochs} (after epoch {n_epochs}) "
        "is kept; resume with --resume")


@pytest.mark.parametrize("strategy,epochs,kill_after", [("gradual", [1, 2], 1), ("full", 3, 2)])
def test_resume_equals_uninterrupted(tmp_path, strategy, epochs, kill_after):
    stages = build_strategy(strategy, 3, epochs=epochs, lr=1e-2, schedule="stlr")
    full = make_trainer(out_dir=tmp_path / "a")
    ref = full.fit(stages)
    crash_after(make_trainer(out_dir=tmp_path / "b"), stages, kill_after)
    assert ckpt.latest_checkpoint(tmp_path / "b" / "checkpoints").name == f"ckpt-{kill_after}"
    resumed = make_trainer(out_dir=tmp_path / "b")  # a fresh process
    hist = resumed.fit(stages, resume=True)
    assert [r["epoch"] for r in hist] == [1, 2, 3]
    assert [r["valid_loss"] for r in hist] == [r["valid_loss"] for r in ref]
    for a, b in zip(full.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)


TIMING = ("elapsed_s", "epoch_s")


def crash_at_step(trainer, stages, n_steps):
    """Kill the run as its optimizer step n_steps + 1 begins."""
    return crash(trainer, "train_step", stages, n_steps)


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_mid_epoch_resume_equals_uninterrupted(tmp_path, grad_accum):
    # 384 rows in batches of 32: 12 steps an epoch (6 with grad_accum 2); a checkpoint every 4 steps
    spe = 12 // grad_accum
    stages = build_strategy("gradual", 3, epochs=[1, 2], lr=1e-2, schedule="stlr")
    ref = make_trainer(out_dir=tmp_path / "a", grad_accum=grad_accum, checkpoint_steps=4)
    ref_hist = ref.fit(stages)
    msg = crash_at_step(make_trainer(out_dir=tmp_path / "b", grad_accum=grad_accum, checkpoint_steps=4),
                        stages, spe + 5)
    assert msg == ("interrupted at epoch 2 step 6; the checkpoint ckpt-1-4 (after epoch 1, step 4) is kept; "
                   "resume with --resume")
    assert sorted(p.name for p in (tmp_path / "b" / "checkpoints").iterdir()) == ["ckpt-1-4", "latest"]
    resumed = make_trainer(out_dir=tmp_path / "b", grad_accum=grad_accum, checkpoint_steps=4)
    hist = resumed.fit(stages, resume=True)
    for a, b in zip(full_rows(ref_hist), full_rows(hist)):
        assert a == b  # the same losses, gradient norms and learning rates, row by row
    assert [r["train_steps"] for r in hist] == [spe] * 3
    for a, b in zip(ref.model.parameters(), resumed.model.parameters()):
        assert torch.equal(a, b)
    assert ckpt.latest_checkpoint(tmp_path / "b" / "checkpoints").name == "ckpt-3"


def test_mid_epoch_resume_refuses_an_epoch_that_got_shorter(tmp_path):
    stages = build_strategy("full", 3, epochs=2, lr=1e-2)
    crash_at_step(make_trainer(out_dir=tmp_path, checkpoint_steps=4), stages, 9)  # saved at step 8
    shorter = make_trainer(out_dir=tmp_path, checkpoint_steps=4, max_steps_per_epoch=6)
    with pytest.raises(UlmfitError, match="8 steps into an epoch that now has fewer"):
        shorter.fit(stages, resume=True)


def full_rows(hist):
    return [{k: v for k, v in r.items() if k not in TIMING} for r in hist]


def test_mid_epoch_checkpoint_every_few_minutes(tmp_path, monkeypatch):
    # a clock that moves 10 minutes a step: with checkpoint_minutes 25 a save lands every third step
    import ulmfit.core.trainer as trainer_mod

    clock = {"t": 0.0}
    monkeypatch.setattr(trainer_mod.time, "time", lambda: clock["t"])
    t = make_trainer(out_dir=tmp_path, checkpoint_minutes=25)
    orig = t.train_step

    def step(*a, **k):
        clock["t"] += 600
        return orig(*a, **k)

    t.train_step = step
    saved = []
    real_save = ckpt.save_training_state
    monkeypatch.setattr(ckpt, "save_training_state",
                        lambda *a, **k: saved.append(a[7]["step"] if a[7:] and a[7] else "end") or real_save(*a, **k))
    t.fit(build_strategy("full", 3, epochs=1, lr=1e-2))
    assert saved == [3, 6, 9, "end"]  # step 12 ends the epoch: the epoch's own checkpoint


def test_atomic_write_survives_crash(tmp_path):
    path = tmp_path / "file.bin"
    ckpt.atomic_write(path, lambda tmp: Path(tmp).write_bytes(b"old"))

    def crash(tmp):
        Path(tmp).write_bytes(b"half")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        ckpt.atomic_write(path, crash)
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


def test_checkpoint_crash_keeps_previous(tmp_path, monkeypatch):
    model = nn.Linear(2, 2)
    ckpt.save_checkpoint(tmp_path, 1, model, {"epoch": 1})

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", boom)
    with pytest.raises(RuntimeError):
        ckpt.save_checkpoint(tmp_path, 2, model, {"epoch": 2})
    latest = ckpt.latest_checkpoint(tmp_path)
    assert latest.name == "ckpt-1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt-1", "latest"]


class _FlatTied(nn.Module):
    """An LSTM whose weights are slices of one flat buffer (cuDNN's layout on a GPU) and a decoder
    tied to the embedding: the two kinds of shared storage a checkpoint meets."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(7, 4)
        self.lstm = nn.LSTM(4, 4, batch_first=True)
        self.dec = nn.Linear(4, 7)
        self.dec.weight = self.emb.weight
        flat = torch.cat([p.detach().reshape(-1) for p in self.lstm.parameters()])
        i = 0
        for name, p in list(self.lstm.named_parameters()):
            setattr(self.lstm, name, nn.Parameter(flat[i:i + p.numel()].view_as(p)))
            i += p.numel()

    def forward(self, ids):
        return self.dec(self.lstm(self.emb(ids))[0])


def test_weights_round_trip_with_flat_buffer_and_tied_weights(tmp_path):
    torch.manual_seed(0)
    src = _FlatTied()
    assert src.lstm.weight_ih_l0.untyped_storage().data_ptr() == src.lstm.bias_hh_l0.untyped_storage().data_ptr()
    ckpt.save_weights(src, tmp_path / "w.safetensors")
    final = ckpt.save_checkpoint(tmp_path / "ck", 1, src, {"epoch": 1})
    from safetensors.torch import load_file

    saved = load_file(str(tmp_path / "w.safetensors"))
    assert "emb.weight" in saved and "dec.weight" not in saved  # the tied tensor is stored once
    ids = torch.tensor([[1, 2, 3, 6]])
    for path in (tmp_path / "w.safetensors", final / "model.safetensors"):
        torch.manual_seed(1)
        dst = _FlatTied()
        ckpt.load_weights(dst, path)
        assert dst.dec.weight is dst.emb.weight  # still tied after loading
        assert torch.equal(dst(ids), src(ids))
    # a file that names only the decoder's copy of the tie loads too
    from safetensors.torch import save_file

    save_file({("dec.weight" if k == "emb.weight" else k): v for k, v in saved.items()}, str(tmp_path / "d.st"))
    dst = _FlatTied()
    ckpt.load_weights(dst, tmp_path / "d.st")
    assert torch.equal(dst.emb.weight, src.emb.weight)
    with pytest.raises(UlmfitError, match="shapes"):
        save_file({**saved, "dec.bias": torch.zeros(3)}, str(tmp_path / "bad.st"))
        ckpt.load_weights(_FlatTied(), tmp_path / "bad.st")
    with pytest.raises(UlmfitError, match="missing"):
        save_file({k: v for k, v in saved.items() if k != "dec.bias"}, str(tmp_path / "miss.st"))
        ckpt.load_weights(_FlatTied(), tmp_path / "miss.st")


def test_nan_loss_is_a_clear_error():
    t = make_trainer()
    t.loss_fn = lambda out, y: nn.functional.cross_entropy(out, y) * float("nan")
    with pytest.raises(UlmfitError, match="loss became nan at epoch 1, step 1"):
        t.fit(build_strategy("full", 3, epochs=1, lr=1e-2))


def test_evaluate_builds_no_autograd_graph():
    t = make_trainer()
    seen = []
    loss_fn = t.loss_fn

    def recording(out, y):
        seen.append(torch.is_grad_enabled())
        return loss_fn(out, y)

    t.loss_fn = recording
    assert "valid_loss" in t.evaluate()
    assert seen and not any(seen)


def test_early_stopping():
    t = make_trainer(early_stopping_patience=0)
    # an LR of zero never improves after the first epoch
    hist = t.fit([Stage(epochs=5, lr=1e-12, schedule="constant")])
    assert len(hist) == 2


def test_grad_accum_matches_bigger_batch():
    # no dropout: a GPU's generator draws two 32-row masks unlike one 64-row mask (the CPU's alike)
    a = make_trainer(bs=32, shuffle=False, grad_accum=2, clip=None, dropout=0.0).fit(
        [Stage(epochs=1, lr=1e-2, schedule="constant")])
    b = make_trainer(bs=64, shuffle=False, clip=None, dropout=0.0).fit([Stage(epochs=1, lr=1e-2, schedule="constant")])
    assert a[0]["valid_loss"] == pytest.approx(b[0]["valid_loss"], rel=1e-4)


def test_lr_finder_restores_and_suggests(tmp_path):
    t = make_trainer(clip=None)
    before = weights(t.model)
    res = lr_find(t, start_lr=1e-5, end_lr=10, num_it=60)
    for a, b in zip(before, t.model.parameters()):
        assert torch.equal(a, b)
    assert all(s is not None for s in res.suggestions.values())
    i = res.lrs.index(res.suggestion)
    lo = min(range(len(res.losses)), key=res.losses.__getitem__)
    # the valley suggestion is on the descending part, before the minimum
    assert i <= lo and res.losses[i] < res.losses[0]
    assert 1e-4 < res.suggestion < 1.0
    res.save(tmp_path)
    data = json.loads((tmp_path / "lr_find.json").read_text())
    assert data["suggested_lr"] == res.suggestion
    assert (tmp_path / "lr_find.png").stat().st_size > 1000


def test_mixed_precision_option():
    with pytest.raises(UlmfitError, match="mixed_precision"):
        make_trainer(mixed_precision="fp8")
    hist = make_trainer(mixed_precision="bf16").fit([Stage(epochs=1, lr=1e-2)])
    assert hist[0]["valid_loss"] < 2


def test_two_processes_match_one(tmp_path):
    """2 CPU processes (torchrun, gloo) with the same global batch give the same result as one;
    the group unfrozen at stage 2 ends identical on both ranks (no find_unused_parameters);
    evaluating batches the ranks shard unevenly themselves neither hangs nor loses rows."""
    from cli_helpers import torchrun

    script = Path(__file__).parents[1] / "ddp_script.py"
    for n, bs, sub in ((1, 64, "one"), (2, 32, "two")):
        d = tmp_path / sub
        d.mkdir()
        torchrun(n, script, d, bs, timeout=300)  # the helper's environment: 1 thread per rank
    one = json.loads((tmp_path / "one" / "rank0.json").read_text())
    r0 = json.loads((tmp_path / "two" / "rank0.json").read_text())
    r1 = json.loads((tmp_path / "two" / "rank1.json").read_text())
    assert one["num_processes"] == 1 and r0["num_processes"] == 2
    assert r0["weights"] == r1["weights"]  # ranks in sync, bit for bit
    # checkpoints inside epochs by rank 0's clock, every 2 steps (log_every): all ranks saved together
    # (else a hang), and saving changed nothing the run computed (compared with one process below)
    assert r0["saved"] == ["ckpt-0-2", "ckpt-0-4", "ckpt-1", "ckpt-1-2", "ckpt-1-4", "ckpt-2"] and r1["saved"] == []
    # same global batch: equal up to float summation order (tolerance 1e-5)
    assert r0["valid_loss"] == pytest.approx(one["valid_loss"], abs=1e-5)
    # an evaluation iterable with 2 batches on one rank, 1 on the other: no hang, same figures
    assert r0["ragged"] == r1["ragged"]
    assert r0["ragged"]["ragged_loss"] == pytest.approx(one["ragged"]["ragged_loss"], abs=1e-5)
    assert r0["ragged"]["ragged_accuracy"] == one["ragged"]["ragged_accuracy"]
    flat = lambda w: torch.tensor([v for p in w for v in p])  # noqa: E731
    assert torch.allclose(flat(r0["weights"]), flat(one["weights"]), atol=1e-5)
    # the bottom group trained only in stage 2 and moved on both ranks
    first = make_trainer().model  # same seed, initial weights
    assert not torch.allclose(flat(r0["weights"][:1]), first[0].weight.detach().cpu().flatten())


def test_two_processes_resume_inside_an_epoch_each_with_its_own_state(tmp_path):
    """Stopped inside epoch 2 and resumed, 2 processes end as if never stopped: each rank gets back
    its own carried tensor (it read other rows than rank 0) and its own RNG states (dropout)."""
    from cli_helpers import torchrun

    script = Path(__file__).parents[1] / "ddp_resume_script.py"
    for sub, modes in (("ref", ["ref"]), ("cut", ["crash", "resume"])):
        d = tmp_path / sub
        d.mkdir()
        for mode in modes:
            torchrun(2, script, d, mode, timeout=300)
    assert sorted(p.name for p in (tmp_path / "cut" / "run" / "checkpoints").iterdir()) == ["ckpt-2", "latest"]
    for rank in (0, 1):
        ref = json.loads((tmp_path / "ref" / f"rank{rank}.json").read_text())
        cut = json.loads((tmp_path / "cut" / f"rank{rank}.json").read_text())
        assert cut == ref, rank
    r0, r1 = (json.loads((tmp_path / "ref" / f"rank{k}.json").read_text()) for k in (0, 1))
    assert r0["seen"] != r1["seen"]  # the ranks carried different tensors


def test_one_cycle_moms_reach_adam_beta1():
    """Each optimizer step runs with the schedule's momentum as Adam's beta1 (beta2 untouched):
    0.8 at the first step, 0.7 at the end of the warm-up, back towards 0.8 at the last step."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = []
    handle = register_optimizer_step_pre_hook(lambda opt, *_: seen.append(opt.param_groups[0]["betas"]))
    try:
        t = make_trainer(bs=32)  # 384 examples: 12 steps
        t.fit(build_strategy("full", 3, epochs=1, lr=1e-2, schedule="one_cycle",
                             schedule_args={"moms": (0.8, 0.7, 0.8)}))
    finally:
        handle.remove()
    assert len(seen) == 12
    assert seen[0] == (pytest.approx(0.8), 0.99)
    assert seen[3] == (pytest.approx(0.7), 0.99)  # warm-up: 25% of 12 steps
    assert min(b1 for b1, _ in seen) == pytest.approx(0.7)
    assert seen[-1][0] == pytest.approx(0.8, abs=0.01) and all(b2 == 0.99 for _, b2 in seen)


def test_clipped_epochs_report_the_pre_clip_gradient_norms():
    """With clipping on, each epoch row carries the mean and max gradient norm before the clip
    (a one-step spike shows in grad_norm_max); without clipping there is nothing to report."""
    t = make_trainer(bs=32, clip=0.5)  # 12 steps an epoch
    orig = t.accelerator.clip_grad_norm_
    seen = []

    def spy(params, max_norm):
        params = list(params)
        if len(seen) == 6:  # a 100x spike at the 7th step
            for p in params:
                p.grad.mul_(100.0)
        norm = orig(params, max_norm)
        seen.append(float(norm))
        return norm

    t.accelerator.clip_grad_norm_ = spy
    (row,) = t.fit(build_strategy("full", 3, epochs=1, lr=1e-3))
    assert len(seen) == 12 and seen[6] == max(seen) > 20 * sorted(seen)[-2]
    assert row["grad_norm_max"] == pytest.approx(seen[6])
    assert row["grad_norm_mean"] == pytest.approx(sum(seen) / 12)
    (row,) = make_trainer(clip=None).fit(build_strategy("full", 3, epochs=1, lr=1e-3))
    assert "grad_norm_mean" not in row and "grad_norm_max" not in row


def test_epoch_rows_report_the_lr_of_the_last_step():
    """An epoch row's ``lr`` is the top group's LR at the epoch's last step, as the schedule set it
    (it used to repeat the stage's peak LR on every row)."""
    from torch.optim.optimizer import register_optimizer_step_pre_hook

    seen = []
    handle = register_optimizer_step_pre_hook(lambda opt, *_: seen.append(opt.param_groups[-1]["lr"]))
    try:
        t = make_trainer(bs=32)  # 384 examples: 12 steps an epoch
        rows = t.fit(build_strategy("full", 3, epochs=2, lr=1e-2, schedule="one_cycle"))
    finally:
        handle.remove()
    assert len(seen) == 24
    assert [r["lr"] for r in rows] == [seen[11], seen[23]]
    assert 1e-2 > rows[0]["lr"] > rows[1]["lr"] > 0
