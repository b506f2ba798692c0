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


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for one value; nan for none)."""
    if not values:
        return math.nan, math.nan
    m = sum(values) / len(values)
    sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return m, sd


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
    d = [v - u for u, v in zip(x, y)]
    (mean_a, std_a), (mean_b, std_b), (mean_d, std_d) = mean_std(x), mean_std(y), mean_std(d)
    out = {"n": len(seeds), "seeds": seeds, "mean_a": mean_a, "mean_b": mean_b, "std_a": std_a, "std_b": std_b,
           "mean_diff": mean_d, "wins": sum(v > 0 for v in d), "ties": sum(v == 0 for v in d),
           "losses": sum(v < 0 for v in d), "diff_p": None, "spread_p": None}
    if len(seeds) >= 2 and std_d > 0:
        out["diff_p"] = float(stats.ttest_rel(y, x).pvalue)
    total = [u + v for u, v in zip(x, y)]
    if len(seeds) >= 3 and std_d > 0 and mean_std(total)[1] > 0:
        # Pitman-Morgan: the spreads are equal exactly when the sums and the differences are uncorrelated
        out["spread_p"] = float(stats.pearsonr(total, d).pvalue)
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
