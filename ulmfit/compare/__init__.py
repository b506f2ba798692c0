"""``ulmfit compare``: strategies, ablations, seeds and labelled-set sizes side by side.

    runner.py  the comparison (``compare``);  rows.py  one run's row and the failure guard
    text.py    text strategies and the shared LM phases;  vision.py  vision recipes
    plots.py   results.csv, summary.md and the plots
"""

from ulmfit.compare.runner import compare

__all__ = ["compare"]
