"""Paired comparison of two strategies (or tools) run on the same seeds.

When two strategies train on the same drawn rows, seed for seed, most of the seed-to-seed spread is
the draws' and is shared; the per-seed differences show the gain far more sharply than two means
± std side by side. And with five seeds a sample std is itself loose (a ratio of two stds under
about 2.5 is within chance at the 5% level), so a claim of "a smaller spread" needs a test too.
Both tests are paired: a paired t-test on the differences, and the Pitman-Morgan test of equal
variances for paired samples (Pitman 1939, Morgan 1939: var(a) = var(b) exactly when a + b and
a - b are uncorrelated). scipy comes with scikit-learn.
"""
from __future__ import annotations

import math


def _std(v: list[float]) -> float:
    m = sum(v) / len(v)
    return math.sqrt(sum((x - m) ** 2 for x in v) / (len(v) - 1)) if len(v) > 1 else 0.0


def _corr_p(x: list[float], y: list[float]) -> float | None:
    """Two-sided p of Pearson's r being 0 (t with n - 2 degrees of freedom); None when undefined."""
    from scipy import stats

    n = len(x)
    if n < 3 or _std(x) == 0 or _std(y) == 0:
        return None
    mx, my = sum(x) / n, sum(y) / n
    r = sum((a - mx) * (b - my) for a, b in zip(x, y)) / ((n - 1) * _std(x) * _std(y))
    r = max(-1.0, min(1.0, r))
    if abs(r) == 1.0:
        return 0.0
    t = r * math.sqrt((n - 2) / (1 - r * r))
    return float(2 * stats.t.sf(abs(t), n - 2))


def paired(a: dict, b: dict) -> dict:
    """Compare `b` with `a`, two {seed: metric} maps, on the seeds both have.

    Returns n, each side's mean and sample std, the mean difference b - a, how many seeds b wins,
    ties and loses, the paired t-test's two-sided p (``diff_p``) and the Pitman-Morgan test's
    two-sided p that the two spreads are equal (``spread_p``). A p is None where the test is
    undefined (fewer than 2 or 3 seeds, or no variation).
    """
    from scipy import stats

    seeds = [s for s in a if s in b and a[s] is not None and b[s] is not None]
    x, y = [float(a[s]) for s in seeds], [float(b[s]) for s in seeds]
    n = len(seeds)
    d = [v - u for u, v in zip(x, y)]
    out = {"n": n, "seeds": seeds, "mean_a": sum(x) / n if n else math.nan, "mean_b": sum(y) / n if n else math.nan,
           "std_a": _std(x) if n else math.nan, "std_b": _std(y) if n else math.nan,
           "mean_diff": sum(d) / n if n else math.nan, "wins": sum(v > 0 for v in d),
           "ties": sum(v == 0 for v in d), "losses": sum(v < 0 for v in d), "diff_p": None, "spread_p": None}
    if n >= 2 and _std(d) > 0:
        t = out["mean_diff"] / (_std(d) / math.sqrt(n))
        out["diff_p"] = float(2 * stats.t.sf(abs(t), n - 1))
    if n >= 3:
        out["spread_p"] = _corr_p([u + v for u, v in zip(x, y)], [v - u for u, v in zip(x, y)])
    return out


def paired_lines(ref: str, comps: list[tuple[str, dict]], digits: int = 4) -> list[str]:
    """A markdown table of :func:`paired` results against `ref`, one row per other name."""
    f = lambda v: "-" if v is None or v != v else f"{v:.{digits}f}"  # noqa: E731
    p = lambda v: "-" if v is None else f"{v:.2f}"  # noqa: E731
    lines = [f"| against {ref} | seeds | mean difference | wins / ties / losses | p (difference) | "
             f"std {ref} / other | p (spreads equal) |", "|---|---|---|---|---|---|---|"]
    for name, r in comps:
        lines.append(f"| {name} | {r['n']} | {'+' if r['mean_diff'] > 0 else ''}{f(r['mean_diff'])} | "
                     f"{r['wins']} / {r['ties']} / {r['losses']} | {p(r['diff_p'])} | "
                     f"{f(r['std_a'])} / {f(r['std_b'])} | {p(r['spread_p'])} |")
    return lines
