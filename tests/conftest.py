import os
import tempfile

import pytest
import torch

# tokenized-text cache of the phases (data.cache): a fresh one per test session, not ~/.cache/ulmfit
os.environ.setdefault("ULMFIT_CACHE", tempfile.mkdtemp(prefix="ulmfit-test-cache-"))
# a fixed thread count: the trainer's thread governor (core/threads.py) would otherwise follow the
# load of whatever else runs on the machine, and the last bits of a result depend on the count. Under
# pytest-xdist (`-n`, pyproject's addopts) the workers share the cores: each takes its share, as
# OpenMP threads spinning against another process's made small tests many times slower
_workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _workers > 1:
    torch.set_num_threads(max(1, torch.get_num_threads() // _workers))
os.environ.setdefault("OMP_NUM_THREADS", str(torch.get_num_threads()))

from cli_helpers import TINY, ulmfit  # noqa: E402


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """`ulmfit run configs/cpu-small.yaml` scaled down (real WikiText-2 and TREC-6); (out, process)."""
    out = tmp_path_factory.mktemp("run") / "cpu-small"
    r = ulmfit("run", "configs/cpu-small.yaml", "--out", str(out), "--quiet", *[a for s in TINY for a in ("--set", s)])
    return out, r


@pytest.fixture
def one_thread():
    """Tiny tensors on a shared 2-core machine: OpenMP threads spinning against other processes made
    such tests 20x slower; one thread is fastest (restored afterwards)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
