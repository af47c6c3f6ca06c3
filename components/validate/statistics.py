"""Per-column statistics of a training set: the baseline that later drift checks compare against.

Numeric columns get moments, quantiles and a histogram whose bin edges are stored with it, so a
drift check bins new data on exactly these edges: HISTOGRAM_BINS equal-width bins between the
baseline's 1% and 99% quantiles, plus counts of values below and above them; and the drift
bins the monitor component compares windows on: the baseline's deciles as edges (ties merged),
with the baseline's count per bin (bin i holds edges[i-1] < x <= edges[i]). Categorical columns
get value frequencies. Key columns are skipped; the label gives the label rate and the timestamp
the time range. Missing values are counted, never part of a statistic; NaN is written as null.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from portside.components.validate.suite import Roles

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
DRIFT_QUANTILES = tuple(i / 10 for i in range(1, 10))
HISTOGRAM_BINS = 20
MAX_CATEGORIES = 1000  # a column that is really free text should not flood the file


def column_statistics(frame: pd.DataFrame, roles: Roles) -> dict[str, Any]:
    import pandas as pd

    numeric_names = set(numeric_columns(frame, roles))
    skip = {*roles.keys, roles.label, roles.timestamp}
    numeric: dict[str, Any] = {}
    categorical: dict[str, Any] = {}
    for name in frame.columns:
        series = frame[name]
        if name in numeric_names:
            numeric[name] = numeric_statistics(series)
        elif name not in skip and not pd.api.types.is_datetime64_any_dtype(series):
            categorical[name] = categorical_statistics(series)
    return {
        "rows": len(frame),
        "label": _label(frame, roles.label),
        "time_range": _time_range(frame, roles.timestamp),
        "numeric": numeric,
        "categorical": categorical,
    }


def numeric_columns(frame: pd.DataFrame, roles: Roles) -> list[str]:
    """The numeric features, in column order: numbers that are not a key, the label or the
    timestamp (booleans are categories)."""
    import pandas as pd

    skip = {*roles.keys, roles.label, roles.timestamp}
    return [
        name
        for name in frame.columns
        if name not in skip
        and pd.api.types.is_numeric_dtype(frame[name])
        and not pd.api.types.is_bool_dtype(frame[name])
    ]


def numeric_statistics(series: pd.Series) -> dict[str, Any]:
    import numpy as np

    values = series.to_numpy(dtype="float64", na_value=np.nan)
    values = values[~np.isnan(values)]
    stats: dict[str, Any] = {"count": len(values), "null_count": len(series) - len(values)}
    if len(values) == 0:
        keys = ("mean", "std", "min", "max", "quantiles", "histogram", "drift_bins")
        return stats | dict.fromkeys(keys)
    quantiles = np.quantile(values, QUANTILES)
    return stats | {
        "mean": _number(values.mean()),
        "std": _number(values.std(ddof=1)) if len(values) > 1 else None,
        "min": _number(values.min()),
        "max": _number(values.max()),
        "quantiles": {str(q): _number(v) for q, v in zip(QUANTILES, quantiles, strict=True)},
        "histogram": _histogram(values, quantiles[0], quantiles[-1]),
        "drift_bins": drift_bins(values),
    }


def drift_bins(values: np.ndarray) -> dict[str, list]:
    """Decile edges of the (non-missing) values and how many values fall in each bin."""
    import numpy as np

    edges = np.unique(np.quantile(values, DRIFT_QUANTILES))
    counts = np.bincount(bin_index(values, edges), minlength=len(edges) + 1)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def bin_index(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """The drift bin of each value: how many edges lie strictly below it."""
    import numpy as np

    return np.searchsorted(edges, values, side="left")


def _histogram(values: np.ndarray, low: float, high: float) -> dict[str, Any] | None:
    import numpy as np

    if not (math.isfinite(low) and math.isfinite(high)):
        return None
    if high <= low:  # a (nearly) constant column still gets one usable bin
        high = low + 1.0
    edges = np.linspace(low, high, HISTOGRAM_BINS + 1)
    inside = values[(values >= low) & (values <= high)]
    counts, _ = np.histogram(inside, bins=edges)
    return {
        "edges": [float(e) for e in edges],
        "counts": [int(c) for c in counts],
        "below": int((values < low).sum()),
        "above": int((values > high).sum()),
    }


def categorical_statistics(series: pd.Series) -> dict[str, Any]:
    counts = series.value_counts(dropna=True)
    total = int(counts.sum())
    top = counts.iloc[:MAX_CATEGORIES]
    return {
        "count": total,
        "null_count": len(series) - total,
        "distinct": len(counts),
        "frequencies": {str(k): int(v) / total for k, v in top.items()},
        "other_frequency": (total - int(top.sum())) / total if total else 0.0,
    }


def _label(frame: pd.DataFrame, column: str | None) -> dict[str, Any] | None:
    import pandas as pd

    if column is None or column not in frame.columns:
        return None
    values = pd.to_numeric(frame[column], errors="coerce")
    return {"column": column, "rate": _number(values.mean()), "positives": int(values.sum())}


def _time_range(frame: pd.DataFrame, column: str | None) -> dict[str, Any] | None:
    if column is None or column not in frame.columns or frame.empty:
        return None
    low, high = frame[column].min(), frame[column].max()
    return {"column": column, "min": _iso(low), "max": _iso(high)}


def _iso(value: Any) -> str | None:
    import pandas as pd

    if pd.isna(value):
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value)


def _number(value: Any) -> float | None:
    try:
        value = float(value)
    except (TypeError, ValueError):  # pd.NA, e.g. the mean of an empty nullable column
        return None
    return value if math.isfinite(value) else None
