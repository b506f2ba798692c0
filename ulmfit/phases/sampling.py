"""Low-shot subsets of a labelled split: `data.train_size` as a total (`100`) or per class (`8pc`).

A total draws each class in proportion to its share (at least one row each); a per-class count
draws exactly N rows of every class (SetFit's protocol: N labelled examples per class), all the
rows of a class that has fewer, with a warning. Both are seeded: the same seed draws the same rows.
"""

from __future__ import annotations

import re
import warnings

import numpy as np

from ulmfit.errors import UlmfitError
from ulmfit.text.data.readers import Split

_PER_CLASS = re.compile(r"^\s*(\d+)\s*pc\s*$", re.IGNORECASE)


def parse_train_size(v) -> tuple[int, bool] | None:
    """`100` -> (100, False); `"8pc"` -> (8, True); None / "all" -> None."""
    if v is None or (isinstance(v, str) and v.strip().lower() in ("all", "none", "full")):
        return None
    if isinstance(v, bool):
        raise UlmfitError(f"train size {v!r} must be a positive integer, N per class as 'Npc', or 'all'")
    m = _PER_CLASS.match(str(v))
    try:
        n, per_class = (int(m.group(1)), True) if m else (int(str(v).strip()), False)
    except ValueError:
        raise UlmfitError(f"train size {v!r} must be a positive integer, N per class as 'Npc' (e.g. 8pc), "
                          "or 'all'") from None
    if n <= 0:
        raise UlmfitError(f"train size {v!r} must be a positive integer, N per class as 'Npc', or 'all'")
    return n, per_class


def subsample(split: Split, size, seed: int) -> Split:
    """A stratified, seeded subsample of `split` (see the module doc for `size`)."""
    parsed = parse_train_size(size)
    if parsed is None:
        return split
    n, per_class = parsed
    if not per_class and n >= len(split):
        return split
    y = split.labels if split.labels.ndim == 1 else split.labels.argmax(1)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(y, return_counts=True)
    if per_class:
        short = [int(c) for c, k in zip(classes, counts) if k < n]
        if short:
            warnings.warn(f"{len(short)} class(es) have fewer than {n} training rows (class ids {short}); "
                          "all their rows are used", stacklevel=2)
        take = np.minimum(counts, n)
    else:
        take = np.maximum(1, np.round(counts / counts.sum() * n).astype(int))
    idx = np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take)]))
    return Split([split.texts[i] for i in idx], split.labels[idx])
