"""Run under `torchrun --nproc_per_node 2 tests/ddp_resume_script.py OUT MODE` (MODE: ref, crash or
resume): the core test problem with dropout, a checkpoint every 2 steps, and a tensor each rank
carries from batch to batch (the sum of the inputs it has read, as an RNN carries its hidden state:
each rank reads its own rows). `crash` stops both ranks at step 9 (epoch 2, after the save at step 8);
`resume` continues from there. Each rank writes its weights and carried sum to OUT/rank<k>.json."""

import json
import sys
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).parent))
from core_helpers import accuracy, make_data, make_model, split  # noqa: E402

from ulmfit.core import Hooks, LayerGroups, Trainer, TrainConfig, build_strategy  # noqa: E402
from ulmfit.errors import Interrupted  # noqa: E402
from torch.utils.data import DataLoader, TensorDataset  # noqa: E402

out, mode = Path(sys.argv[1]), sys.argv[2]
x, y = make_data()
model = make_model(0, dropout=0.3)
model.seen = torch.zeros(8)


def forward(m, inputs, targets, train):  # m: the DDP wrapper in training
    if train:
        model.seen = model.seen + inputs.sum(0)
    return m(inputs)


def set_seen(m, tensors):
    m.seen = tensors[0]


hooks = Hooks(forward=forward, get_carry=lambda m: [m.seen], set_carry=set_seen)
t = Trainer(model, LayerGroups(model, split(model)), nn.functional.cross_entropy,
            DataLoader(TensorDataset(x[:384], y[:384]), batch_size=32, shuffle=True),
            DataLoader(TensorDataset(x[384:], y[384:]), batch_size=64), TrainConfig(seed=0, progress=False, checkpoint_steps=2),
            hooks=hooks, metrics={"accuracy": accuracy}, out_dir=out / "run")
stages = build_strategy("full", 3, epochs=2, lr=1e-2, schedule="one_cycle")  # 6 steps an epoch a rank
if mode == "crash":
    orig, calls = t.train_step, {"n": 0}

    def step(*a, **k):
        if calls["n"] == 9:
            raise KeyboardInterrupt
        calls["n"] += 1
        return orig(*a, **k)

    t.train_step = step
    try:
        t.fit(stages)
    except Interrupted as e:
        print(e, file=sys.stderr)
else:
    t.fit(stages, resume=mode == "resume")
    rank = t.accelerator.process_index
    (out / f"rank{rank}.json").write_text(json.dumps({
        "weights": [p.detach().flatten().tolist() for p in model.parameters()], "seen": model.seen.tolist(),
        "history": [{k: v for k, v in r.items() if k not in ("elapsed_s", "epoch_s")} for r in t.history]}))
t.end()
