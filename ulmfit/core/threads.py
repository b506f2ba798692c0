"""CPU threads for torch: no more than the cores this process may use, fewer while other processes
keep some of those cores busy.

Why: torch's OpenMP threads spin while they wait for each other. When another CPU-bound process
shares the cores, a thread that the scheduler has parked holds up every parallel region, and a
training step on a 2-core machine became 3-10x slower (docs/benchmarks.md, "Sharing the CPU"). A
passive wait policy (``OMP_WAIT_POLICY=PASSIVE``) removes the stall but costs 30-50% when the
process is alone, so we keep OpenMP's default and change the thread count instead:

- :func:`available_cores`: the CPUs in this process's affinity mask, capped by a cgroup CPU quota
  (containers), so a 2-CPU quota on a 64-core host does not start 64 threads;
- :class:`ThreadGovernor`: every few seconds, the CPU time the *other* processes used on our CPUs
  (``/proc/stat`` minus this process's own time); while they keep about one core busy, torch gets
  one thread fewer, and the threads come back when they stop.

Nothing changes where the user chose: ``OMP_NUM_THREADS`` set, or an explicit thread count.
"""

from __future__ import annotations

import math
import os
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from ulmfit.forked import can_fork


def _cgroup_quota() -> float | None:
    """CPUs allowed by a cgroup CPU quota (v2 ``cpu.max`` or v1 ``cfs_quota_us``), None if none."""
    try:
        v2 = Path("/sys/fs/cgroup/cpu.max")
        if v2.exists():
            quota, period = v2.read_text().split()[:2]
            return None if quota == "max" else int(quota) / int(period)
        v1 = Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us")
        if v1.exists():
            quota = int(v1.read_text())
            period = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
            return None if quota <= 0 else quota / period
    except (OSError, ValueError):
        return None
    return None


def affinity() -> set[int] | None:
    """The CPU ids this process may run on (None where the platform does not say)."""
    return os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None


def available_cores() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup quota (at least 1)."""
    cpus = affinity()
    n = len(cpus) if cpus else (os.cpu_count() or 1)
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.floor(quota)))
    return max(1, n)


def user_fixed_threads() -> bool:
    """True when the user chose the thread count through the environment."""
    return bool(os.environ.get("OMP_NUM_THREADS") or os.environ.get("MKL_NUM_THREADS"))


def fit_to_cores() -> int:
    """Cap torch's threads at the available cores (affinity / quota) unless the user chose; returns
    the count in force. Never raises the count above torch's own default."""
    if not user_fixed_threads():
        n = min(torch.get_num_threads(), available_cores())
        if n != torch.get_num_threads():
            torch.set_num_threads(n)
    return torch.get_num_threads()


def _busy_seconds(cpus: set[int] | None) -> float | None:
    """Seconds of non-idle time on ``cpus`` since boot, from ``/proc/stat`` (None off Linux)."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    busy = 0
    for line in lines:
        if not line.startswith("cpu") or line.startswith("cpu "):
            continue
        name, *vals = line.split()
        if cpus is not None and int(name[3:]) not in cpus:
            continue
        v = [int(x) for x in vals]
        busy += sum(v[:8]) - v[3] - v[4]  # user nice system idle iowait irq softirq steal
    return busy / hz


class ThreadGovernor:
    """Lowers torch's thread count while other processes use our cores, raises it back after.

    ``tick()`` is cheap (a clock read) and does the measurement at most every ``interval``
    seconds; call it after each training step. ``enabled=False`` (an explicit thread count, GPU,
    several processes) makes it do nothing, not even cap the count at the available cores."""

    def __init__(self, interval: float = 2.0, enabled: bool = True):
        self.cpus = affinity()
        self.max_threads = fit_to_cores() if enabled else torch.get_num_threads()
        # under a cgroup quota /proc/stat is the host's: other tenants' load is not ours to follow
        self.enabled = (enabled and not user_fixed_threads() and _cgroup_quota() is None
                        and _busy_seconds(self.cpus) is not None)
        self.interval = interval
        self.changes: list[tuple[float, int]] = []  # (others' busy cores, new thread count)
        self._last = self._sample() if self.enabled else None

    def _sample(self):
        t = os.times()
        return time.monotonic(), _busy_seconds(self.cpus), t.user + t.system

    def others_busy(self, prev, now) -> float:
        """Cores' worth of CPU time other processes used on our CPUs between two samples."""
        wall = now[0] - prev[0]
        if wall <= 0:
            return 0.0
        return max(0.0, (now[1] - prev[1]) - (now[2] - prev[2])) / wall

    def tick(self) -> None:
        if not self.enabled or time.monotonic() - self._last[0] < self.interval:
            return
        now = self._sample()
        others = self.others_busy(self._last, now)
        self._last = now
        want = max(1, min(self.max_threads, self.max_threads - round(others)))
        if want != torch.get_num_threads():
            torch.set_num_threads(want)
            self.changes.append((round(others, 2), want))


@contextmanager
def one_thread(on: bool = True):
    """torch on one thread inside the block (a forked process's share of the cores), then as before."""
    before = torch.get_num_threads()
    if on:
        torch.set_num_threads(1)
    try:
        yield
    finally:
        if on:
            torch.set_num_threads(before)


#: batches each process should get before prediction is shared out (a fork costs milliseconds,
#: a batch of 64 reviews about a second)
MIN_BATCHES_PER_WORKER = 2


def predict_workers(n_texts: int, bs: int, device, workers: int | None = None) -> int:
    """Processes to predict ``n_texts`` in batches of ``bs`` with: ``workers`` if given (at most one a
    batch); else, on the CPU and outside several-process training, one per thread torch may use
    (``threads.fit_to_cores`` and ``OMP_NUM_THREADS`` set that), once each gets
    ``MIN_BATCHES_PER_WORKER`` batches; else 1."""
    n_batches = -(-n_texts // max(1, bs))
    if workers is not None:
        return max(1, min(int(workers), n_batches)) if can_fork() else 1
    if torch.device(device).type != "cpu" or not can_fork() or (
            torch.distributed.is_available() and torch.distributed.is_initialized()):
        return 1
    return max(1, min(torch.get_num_threads(), n_batches // MIN_BATCHES_PER_WORKER))
