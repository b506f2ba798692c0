"""Run under `torchrun --nproc_per_node 2 tests/ddp_script.py OUT BS`: trains the core test problem
with gradual unfreezing and writes each rank's final loss and weights to OUT/rank<k>.json, and the
metrics over a self-sharded evaluation iterable whose ranks get unequal numbers and sizes of batches
(as sorted-length classification batches do). It checkpoints inside epochs by the clock (every
2 steps rank 0's clock decides for all ranks) and records the checkpoints rank 0 wrote."""

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from core_helpers import make_data, make_trainer  # noqa: E402

from ulmfit.core import build_strategy  # noqa: E402
from ulmfit.core import checkpoint as ckpt  # noqa: E402

saved, save = [], ckpt.save_training_state
ckpt.save_training_state = lambda *a, **k: saved.append(save(*a, **k).name) or Path(saved[-1])

out, bs = Path(sys.argv[1]), int(sys.argv[2])
t = make_trainer(bs=bs, shuffle=False, clip=None, out_dir=out / "run", checkpoint_minutes=1e-6, log_every=2)
t.model[2].p = 0.0  # no dropout: ranks would draw different masks
hist = t.fit(build_strategy("gradual", 3, epochs=[1, 1], lr=0.05, schedule="one_cycle"))
rank, world = t.accelerator.process_index, t.accelerator.num_processes
x, y = make_data()
cuts = [384, 434, 445, 484]  # the valid rows in batches of 50, 11, 39: of 2 ranks, rank 0 gets 2 batches
ragged = [(x[a:b], y[a:b]) for a, b in zip(cuts, cuts[1:])][rank::world]  # (89 rows), rank 1 one (11)
ragged_metrics = t.evaluate(ragged, prefix="ragged")
weights = [p.detach().flatten().tolist() for p in t.model.parameters()]
(out / f"rank{rank}.json").write_text(json.dumps({
    "valid_loss": hist[-1]["valid_loss"], "train_loss": hist[-1]["train_loss"],
    "num_processes": world, "weights": weights, "ragged": ragged_metrics, "saved": saved}))
t.end()
