"""Realized quality: the served scores against the labels that arrived later, per model version
and serving arm, with a confidence interval, and the canary's A/B readout against the champion.

Labels (a chargeback, a confirmed fraud) come days after the prediction, keyed by what the
client sent as the request id (`{"id": ...}`): a labels file row matches the prediction-log
row whose request_id equals its key (as text) and, when the file has an `instance` column, that
instance of the request (else the first). The join runs in DuckDB over the Parquet files; only
the labelled (score, label) pairs are loaded.

The ROC AUC's 95% interval is DeLong's (the variance of the AUC from each positive's and each
negative's placement), exact for ties; two arms serve different requests, so their difference
has the sum of the variances.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from portside.components.errors import InputDataError
from portside.components.monitor.window import WindowScan, literal, quoted

if TYPE_CHECKING:
    import numpy as np

Z_95 = 1.959964
QualityStatus = Literal["ok", "quality-drop", "not enough data"]


@dataclass(frozen=True)
class ArmQuality:
    model_version: str
    arm: str
    predictions: int  # rows of this version and arm in the window
    labelled: int
    positives: int
    roc_auc: float | None
    roc_auc_low: float | None  # 95% interval
    roc_auc_high: float | None
    roc_auc_variance: float | None
    mean_score: float
    label_rate: float | None
    status: QualityStatus = "ok"


@dataclass(frozen=True)
class AbReadout:
    """The challenger's ROC AUC minus the champion's, on the labelled requests of the window."""

    champion_version: str
    challenger_version: str
    challenger_arm: str
    difference: float
    low: float
    high: float
    conclusion: str


def delong_auc(labels: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """ROC AUC and DeLong's variance of it (ties count half)."""
    import numpy as np
    from scipy.stats import rankdata

    positive = labels.astype(bool)
    m, n = int(positive.sum()), int((~positive).sum())
    if m == 0 or n == 0:
        raise ValueError("the ROC AUC needs both classes")
    ranks = rankdata(scores)
    # A positive's placement: the share of negatives scored below it (ties half), from its rank
    # among all scores minus its rank among the positives; a negative's, the share of positives
    # scored above it.
    v10 = (ranks[positive] - rankdata(scores[positive])) / n
    v01 = 1.0 - (ranks[~positive] - rankdata(scores[~positive])) / m
    variance = (np.var(v10, ddof=1) / m if m > 1 else 0.0) + (
        np.var(v01, ddof=1) / n if n > 1 else 0.0
    )
    return float(v10.mean()), float(variance)


def realized_quality(
    scan: WindowScan,
    labels: Path,
    labels_key: str,
    label_column: str,
    min_labels: int,
) -> list[ArmQuality]:
    """Per (model version, arm) of the window's predictions, the ROC AUC on those labelled.
    Counts and mean scores are aggregated in DuckDB; only the labelled pairs are loaded."""
    import numpy as np

    scan.require(["request_id", "instance", "model_version", "arm", "score"], "of a prediction log")
    labelled = _labels_relation(scan, labels, labels_key, label_column)
    totals = scan.query(
        f"SELECT {_group('')}, count(*) AS n, avg(CAST(score AS DOUBLE)) AS mean FROM {{window}} "
        "GROUP BY ALL ORDER BY ALL",
        all_arms=True,
    ).fetchall()
    pairs = scan.query(
        f"""
        WITH labels AS ({labelled})
        SELECT {_group("p.")}, CAST(p.score AS DOUBLE) AS score, l.label
        FROM {{window}} p JOIN labels l
          ON CAST(p.request_id AS VARCHAR) = l.key AND p.instance = l.instance
        WHERE isfinite(CAST(p.score AS DOUBLE)) AND l.label IS NOT NULL
        """,
        all_arms=True,
    ).to_arrow_table()
    versions = pairs["model_version"].to_numpy(zero_copy_only=False)
    arms = pairs["arm"].to_numpy(zero_copy_only=False)
    scores = pairs["score"].to_numpy(zero_copy_only=False)
    label_values = pairs["label"].to_numpy(zero_copy_only=False).astype(np.int64)
    result = []
    for version, arm, n, mean in totals:
        chosen = (versions == version) & (arms == arm)
        result.append(
            arm_quality(
                version, arm, n, label_values[chosen], scores[chosen], mean or 0.0, min_labels
            )
        )
    return result


def _group(prefix: str) -> str:
    """Version and arm as text (a row without them is grouped as "(none)")."""
    return (
        f"COALESCE(CAST({prefix}model_version AS VARCHAR), '(none)') AS model_version, "
        f"COALESCE(CAST({prefix}arm AS VARCHAR), '(none)') AS arm"
    )


def _labels_relation(scan: WindowScan, labels: Path, labels_key: str, label_column: str) -> str:
    """The labels as (key text, instance, label), checked: the file and its columns exist,
    one label per key."""
    if not labels.exists():
        raise InputDataError(f"{labels}: labels file not found")
    source = f"read_parquet({literal(str(labels))}, union_by_name = true)"
    described = scan.connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
    types = {row[0]: row[1] for row in described}
    missing = [c for c in (labels_key, label_column) if c not in types]
    if missing:
        raise InputDataError(
            f"{labels}: the labels lack column(s) {', '.join(missing)}; present: {', '.join(types)}"
        )
    key = quoted(labels_key)
    if types[labels_key] in ("DOUBLE", "FLOAT"):  # pandas' integers with gaps: 123.0 is "123"
        key = f"CAST({key} AS BIGINT)"
    instance = "instance" if "instance" in types else "0"
    relation = (
        f"SELECT CAST({key} AS VARCHAR) AS key, {instance} AS instance, "
        f"CAST({quoted(label_column)} AS INTEGER) AS label FROM {source} "
        f"WHERE {quoted(labels_key)} IS NOT NULL"
    )
    try:
        repeated = scan.connection.execute(
            f"SELECT key, instance FROM ({relation}) GROUP BY ALL HAVING count(*) > 1 LIMIT 3"
        ).fetchall()
    except Exception as error:  # a label that is not a number, a key DuckDB cannot cast
        raise InputDataError(f"{labels}: {label_column!r} / {labels_key!r}: {error}") from error
    if repeated:
        keys = ", ".join(str(k) for k, _ in repeated)
        raise InputDataError(f"{labels}: more than one label for {labels_key} {keys}")
    return relation


def arm_quality(
    version: str,
    arm: str,
    predictions: int,
    labels: np.ndarray,
    scores: np.ndarray,
    mean_score: float,
    min_labels: int,
) -> ArmQuality:
    """Enough labels: at least `min_labels`, both classes among them."""
    positives = int(labels.sum())
    labelled = len(labels)
    enough = labelled >= min_labels and 0 < positives < labelled
    auc = low = high = variance = None
    if enough:
        auc, variance = delong_auc(labels, scores)
        half = Z_95 * math.sqrt(variance)
        low, high = max(0.0, auc - half), min(1.0, auc + half)
    return ArmQuality(
        model_version=version,
        arm=arm,
        predictions=predictions,
        labelled=labelled,
        positives=positives,
        roc_auc=auc,
        roc_auc_low=low,
        roc_auc_high=high,
        roc_auc_variance=variance,
        mean_score=mean_score,
        label_rate=positives / labelled if labelled else None,
        status="ok" if enough else "not enough data",
    )


def ab_readouts(
    arms: list[ArmQuality], champion_arm: str, paired_arms: tuple[str, ...] = ("shadow",)
) -> list[AbReadout]:
    """Each other arm against the champion arm, where both have enough labels. Arms that score
    the champion's own requests (the shadow) are left out: the interval here is for two
    independent samples, and theirs are paired."""
    champions = [a for a in arms if a.arm == champion_arm and a.roc_auc is not None]
    if len(champions) != 1:  # none, or the champion changed within the window
        return []
    champion = champions[0]
    readouts = []
    for other in arms:
        if other.arm in (champion_arm, *paired_arms) or other.roc_auc is None:
            continue
        difference = other.roc_auc - champion.roc_auc  # type: ignore[operator]
        half = Z_95 * math.sqrt(champion.roc_auc_variance + other.roc_auc_variance)  # type: ignore[operator]
        low, high = difference - half, difference + half
        name = f"{other.arm} v{other.model_version}"
        conclusion = (
            f"{name} is better" if low > 0 else f"{name} is worse" if high < 0
            else "no significant difference yet"
        )  # fmt: skip
        readouts.append(
            AbReadout(
                champion.model_version,
                other.model_version,
                other.arm,
                difference,
                low,
                high,
                conclusion,
            )  # fmt: skip
        )
    return readouts


def quality_drop(arm: ArmQuality, reference_auc: float, max_drop: float) -> bool:
    """The window's ROC AUC is below the reference by more than `max_drop`, beyond doubt:
    even the top of its 95% interval is."""
    return arm.roc_auc_high is not None and arm.roc_auc_high < reference_auc - max_drop
