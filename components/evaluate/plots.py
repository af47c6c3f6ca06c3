"""ROC, PR and reliability plots as PNG files.

Figures are built with matplotlib's object API (`Figure`, Agg canvas), so no pyplot state and
no display backend are involved; safe in containers and worker threads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portside.components.evaluate.metrics import Curve

# label -> curve; the candidate first, then the champion if there is one
Curves = dict[str, "Curve"]


def _save(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _axes(title: str, xlabel: str, ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5, 4.5))
    ax = fig.add_subplot()
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, xlim=(0, 1), ylim=(0, 1.02))
    ax.grid(alpha=0.3)
    return fig, ax


def roc_plot(curves: Curves, aucs: dict[str, float], path: Path) -> None:
    fig, ax = _axes("ROC (test window)", "false positive rate", "true positive rate")
    for label, c in curves.items():
        ax.plot([0, *c.fpr], [0, *c.tpr], label=f"{label} (AUC {aucs[label]:.3f})")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey")
    ax.legend(loc="lower right")
    _save(fig, path)


def pr_plot(curves: Curves, aps: dict[str, float], path: Path) -> None:
    fig, ax = _axes("Precision-recall (test window)", "recall", "precision")
    for label, c in curves.items():
        ax.step(c.tpr, c.precision, where="post", label=f"{label} (AP {aps[label]:.3f})")
    ax.legend(loc="upper right")
    _save(fig, path)


def calibration_plot(bins: list[dict], ece: float, path: Path) -> None:
    fig, ax = _axes(f"Reliability (ECE {ece:.4f})", "mean predicted probability", "positive rate")
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    predicted = [b["mean_predicted"] for b in bins]
    observed = [b["observed_rate"] for b in bins]
    ax.plot(predicted, observed, marker="o", label="model")
    for x, y, b in zip(predicted, observed, bins, strict=True):
        ax.annotate(str(b["rows"]), (x, y), textcoords="offset points", xytext=(4, -10), size=7)
    ax.legend(loc="upper left")
    _save(fig, path)
