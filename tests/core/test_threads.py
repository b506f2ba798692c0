"""The thread governor: cores from the affinity mask and cgroup quota; fewer threads while other
processes keep a core busy, the full count back when they stop; hands off where the user chose."""

import subprocess
import sys
import time

import pytest
import torch

from ulmfit.core import threads as T


@pytest.fixture
def restore_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_available_cores_follows_affinity_and_quota(monkeypatch):
    monkeypatch.setattr(T, "affinity", lambda: {0, 1, 2, 3})
    monkeypatch.setattr(T, "_cgroup_quota", lambda: None)
    assert T.available_cores() == 4
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 2.5)  # 250 ms per 100 ms period: 2 whole cores
    assert T.available_cores() == 2
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 0.5)
    assert T.available_cores() == 1


def test_fit_to_cores_caps_but_never_raises(restore_threads, monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setattr(T, "available_cores", lambda: 1)
    assert T.fit_to_cores() == 1 and torch.get_num_threads() == 1
    monkeypatch.setattr(T, "available_cores", lambda: 8)
    assert T.fit_to_cores() == 1  # torch's own choice is not raised
    torch.set_num_threads(2)
    monkeypatch.setattr(T, "available_cores", lambda: 1)
    assert T.ThreadGovernor(enabled=False).max_threads == 2 == torch.get_num_threads()  # an explicit count stays


def test_governor_drops_a_thread_under_load_and_restores_it(restore_threads, monkeypatch):
    torch.set_num_threads(2)
    monkeypatch.setattr(T, "available_cores", lambda: 2)
    monkeypatch.setattr(T, "_cgroup_quota", lambda: None)
    g = T.ThreadGovernor(interval=0.0)
    assert g.enabled and g.max_threads == 2
    clock = {"t": 0.0, "busy": 0.0, "ours": 0.0}

    def run(others: float, ours: float, seconds: float = 2.0):
        clock["t"] += seconds
        clock["busy"] += (others + ours) * seconds
        clock["ours"] += ours * seconds
        g.tick()
        return torch.get_num_threads()

    monkeypatch.setattr(g, "_sample", lambda: (clock["t"], clock["busy"], clock["ours"]))
    g._last = g._sample()
    assert run(others=0.1, ours=2.0) == 2      # background noise: keep both
    assert run(others=0.9, ours=1.1) == 1      # a busy neighbour: one thread fewer
    assert run(others=1.0, ours=1.0) == 1      # it stays while the neighbour runs
    assert run(others=0.0, ours=1.0) == 2      # and comes back when it stops
    assert g.changes == [(0.9, 1), (0.0, 2)]


def test_governor_sees_a_real_busy_process(restore_threads):
    g = T.ThreadGovernor()
    if not g.enabled:
        pytest.skip("no /proc/stat here")
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)  # let it start
        before = g._sample()
        time.sleep(1.0)  # this process idles: the busy one is all the others
        after = g._sample()
    finally:
        busy.kill()
        busy.wait()
    assert 0.6 <= g.others_busy(before, after) <= len(g.cpus or [0]) + 0.2


def test_user_choice_disables_the_governor(restore_threads, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    g = T.ThreadGovernor(interval=0.0)
    assert not g.enabled
    g.tick()  # does nothing
    assert T.ThreadGovernor(enabled=False).enabled is False
