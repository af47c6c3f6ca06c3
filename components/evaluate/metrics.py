"""Binary classification metrics on numpy arrays: ROC, PR, log loss, calibration.

Written out (about as long as the imports they would replace) so the component needs only numpy.
Ties in scores are handled as one threshold, as scikit-learn does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

TARGET_FPR = 0.01
CALIBRATION_BINS = 10


@dataclass(frozen=True)
class Curve:
    """Cumulative true/false positives at each distinct score, highest score first."""

    thresholds: np.ndarray
    tps: np.ndarray
    fps: np.ndarray
    positives: int
    negatives: int

    @property
    def tpr(self) -> np.ndarray:
        return self.tps / self.positives

    @property
    def fpr(self) -> np.ndarray:
        return self.fps / self.negatives

    @property
    def precision(self) -> np.ndarray:
        return self.tps / (self.tps + self.fps)


def curve(labels: np.ndarray, scores: np.ndarray) -> Curve:
    import numpy as np

    order = np.argsort(-scores, kind="stable")
    y, s = labels[order].astype(np.float64), scores[order]
    last_of_tie = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]
    tps = np.cumsum(y)[last_of_tie]
    fps = (last_of_tie + 1) - tps
    positives = int(y.sum())
    return Curve(s[last_of_tie], tps, fps, positives, len(y) - positives)


def roc_auc(c: Curve) -> float:
    import numpy as np

    fpr, tpr = np.r_[0.0, c.fpr], np.r_[0.0, c.tpr]
    # The trapezoid rule written out: numpy 2 names it trapezoid, numpy 1 (the TFX
    # environment) trapz.
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def pr_auc(c: Curve) -> float:
    """Average precision: precision at each threshold weighted by the recall it adds."""
    import numpy as np

    recall = np.r_[0.0, c.tpr]
    return float(np.sum(np.diff(recall) * c.precision))


def recall_at_fpr(c: Curve, target: float = TARGET_FPR) -> tuple[float, float | None]:
    """Highest recall whose false-positive rate stays within target, and its threshold (None
    when even the highest score flags too many negatives)."""
    import numpy as np

    within = np.flatnonzero(c.fpr <= target)
    if within.size == 0:
        return 0.0, None
    best = within[-1]  # fpr and tpr only grow as the threshold drops
    return float(c.tpr[best]), float(c.thresholds[best])


def roc_points(c: Curve, most: int = 200) -> dict[str, list[float]]:
    """At most `most` points of the ROC curve, evenly spread over its thresholds (for UIs)."""
    import numpy as np

    keep = np.unique(np.linspace(0, len(c.thresholds) - 1, min(most, len(c.thresholds))).round())
    keep = keep.astype(int)
    return {
        "fpr": c.fpr[keep].tolist(),
        "tpr": c.tpr[keep].tolist(),
        "thresholds": c.thresholds[keep].astype(float).tolist(),
    }


def log_loss(labels: np.ndarray, scores: np.ndarray) -> float:
    import numpy as np

    p = np.clip(scores.astype(np.float64), 1e-7, 1 - 1e-7)
    y = labels.astype(np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(labels: np.ndarray, scores: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Per equal-width score bin: rows, mean predicted probability, observed positive rate."""
    import numpy as np

    index = np.minimum((scores * bins).astype(int), bins - 1)
    rows = []
    for b in range(bins):
        members = index == b
        if members.any():
            rows.append(
                {
                    "bin_low": b / bins,
                    "bin_high": (b + 1) / bins,
                    "rows": int(members.sum()),
                    "mean_predicted": float(scores[members].mean()),
                    "observed_rate": float(labels[members].mean()),
                }
            )
    return rows


def expected_calibration_error(curve_rows: list[dict]) -> float:
    total = sum(r["rows"] for r in curve_rows)
    gaps = (r["rows"] * abs(r["mean_predicted"] - r["observed_rate"]) for r in curve_rows)
    return float(sum(gaps) / total)
