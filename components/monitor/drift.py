"""Distribution distances between a baseline and a window, on shared bins (numpy only).

Both take counts per bin, baseline and window, over the same bins (the baseline's quantile bins
for a number, its categories for a category; missing values are a bin of their own, so a
change in the null rate is drift too).

- Population stability index: sum of (w - b) * ln(w / b) over the bins' proportions. A bin
  one side never saw would make it infinite, so proportions are floored at PROPORTION_FLOOR
  first (the usual convention). Rules of thumb: < 0.1 stable, 0.1-0.25 moderate, > 0.25 major.
- Jensen-Shannon distance: the square root of the JS divergence with log base 2, in [0, 1];
  symmetric and finite without any floor.

Without drift, both still grow as the window shrinks: PSI by about (bins - 1) * (1/n + 1/N) in
expectation. Below a minimum window size the verdict is "not enough data", never drift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

PROPORTION_FLOOR = 1e-4


def proportions(counts: np.ndarray) -> np.ndarray:
    import numpy as np

    counts = np.asarray(counts, dtype=np.float64)
    total = counts.sum()
    if total <= 0:
        raise ValueError("no counts: a distribution needs at least one value")
    return counts / total


def population_stability_index(baseline: np.ndarray, window: np.ndarray) -> float:
    import numpy as np

    b = np.maximum(proportions(baseline), PROPORTION_FLOOR)
    w = np.maximum(proportions(window), PROPORTION_FLOOR)
    return float(np.sum((w - b) * np.log(w / b)))


def jensen_shannon_distance(baseline: np.ndarray, window: np.ndarray) -> float:
    import numpy as np

    b, w = proportions(baseline), proportions(window)
    m = (b + w) / 2

    def kl(p: np.ndarray) -> float:
        inside = p > 0
        return float(np.sum(p[inside] * np.log2(p[inside] / m[inside])))

    return float(np.sqrt(max((kl(b) + kl(w)) / 2, 0.0)))
