"""Shared by the end-to-end tests: the repository, the data, the `ulmfit` CLI in a subprocess, and
torchrun for the tests with several processes."""

import itertools
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("ULMFIT_DATA", ROOT.parent / "shared" / "data"))
# cpu-small scaled down to seconds: a tiny LM on 12 WikiText-2 articles, a few steps a phase
TINY = [
    "pretrain.data.max_items=12", "pretrain.model.emb_size=32", "pretrain.model.n_hid=48",
    "pretrain.train.bs=8", "pretrain.train.bptt=24", "pretrain.train.max_steps_per_epoch=6",
    "finetune_lm.data.max_items=400", "finetune_lm.train.bs=8", "finetune_lm.train.bptt=24",
    "finetune_lm.train.max_steps_per_epoch=4",
    "classifier.data.max_items=300", "classifier.train.bs=16", "classifier.train.bptt=24",
    "classifier.train.max_steps_per_epoch=4",
]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "OMP_NUM_THREADS": "1",
       "TOKENIZERS_PARALLELISM": "false", "ULMFIT_DATA": str(DATA)}


def ulmfit(*args, input=None, check=True):
    """Run `ulmfit ARGS` from the repository root; raise with its stderr when it fails."""
    r = subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=ENV, capture_output=True,
                       text=True, input=input, timeout=600)
    if check and r.returncode != 0:
        raise AssertionError(f"ulmfit {' '.join(args)} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r


_CALLS = itertools.count()


def torchrun(nproc: int, *args, timeout=600):
    """Run `torchrun --nproc_per_node NPROC ARGS` from the repository root on a port of its own
    (from the pid and a count of the calls: no two runs of one session share one); raise with its
    stderr when it fails."""
    port = 29500 + (10 * os.getpid() + next(_CALLS)) % 9000
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port", str(port),
           *map(str, args)]
    # the processes share the CPU over gloo, also on a machine with one GPU
    r = subprocess.run(cmd, cwd=ROOT, env={**ENV, "CUDA_VISIBLE_DEVICES": ""}, capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise AssertionError(f"torchrun {' '.join(map(str, args))} exited {r.returncode}:\n{r.stderr[-3000:]}")
    return r
