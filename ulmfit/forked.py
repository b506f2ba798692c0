"""Work split over forked processes: ``fork_each(fn, n)`` runs ``fn(0)`` in this process and
``fn(1)`` .. ``fn(n - 1)`` in forked children, which inherit everything ``fn`` reads (texts, a
model: nothing is pickled on the way in) and send their result back through a pipe. Used where
one process cannot keep the cores busy: tokenizing a large batch, and predicting with an LSTM,
whose batch-64 recurrent products scale poorly over threads (docs/benchmarks.md#prediction).
No torch here, so that tokenizing in forked processes does not load it."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys


def can_fork() -> bool:
    """False where fork is unavailable (Windows) or inside a daemonic process (a DataLoader worker,
    which may not have children)."""
    return (sys.platform != "win32" and "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon)


def fork_each(fn, n: int) -> list:
    """``[fn(0), ..., fn(n - 1)]``: ``fn(0)`` here, the others in forked children, in order. A child
    that fails has its part redone here, so a failure costs time, never a result."""
    if n <= 1 or not can_fork():
        return [fn(k) for k in range(max(n, 1))]
    children = []
    for k in range(1, n):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child: compute, write, leave without running any cleanup of the parent's
            code = 1
            try:
                os.close(r)
                with os.fdopen(w, "wb") as f:
                    pickle.dump(fn(k), f, protocol=pickle.HIGHEST_PROTOCOL)
                code = 0
            finally:
                os._exit(code)
        os.close(w)
        children.append((pid, r, k))
    parts = [fn(0)]
    for pid, r, k in children:
        with os.fdopen(r, "rb") as f:
            data = f.read()
        _, status = os.waitpid(pid, 0)
        parts.append(pickle.loads(data) if status == 0 and data else fn(k))
    return parts
