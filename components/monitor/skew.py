"""Training/serving skew: the feature values the service scored with (the prediction log) against
the values training would have joined for the same entity at the same time (the features
component's point-in-time join, `as_known`: what was known then).

A sample of the window's logged rows becomes entity rows (the keys, the log's time, the request
fields); the feature service joins them exactly as a training set is built, and each feature is
compared row by row. Numbers match within a relative tolerance (the online store may keep a
float32), a missing value matches only a missing value. A feature skews when more than
`threshold` of the compared rows differ: a stale online store (materialization behind), a
transformation done differently online, or a wrong join key all show up here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from portside.components.errors import ConfigurationError, InputDataError

if TYPE_CHECKING:
    import pyarrow as pa

    from portside.components.monitor.window import WindowScan

RELATIVE_TOLERANCE = 1e-5
EXAMPLES = 5
SkewStatus = Literal["ok", "skew"]


@dataclass(frozen=True)
class FeatureSkew:
    feature: str
    compared: int
    mismatched: int
    mismatch_rate: float
    served_missing: int
    offline_missing: int
    threshold: float
    status: SkewStatus
    examples: list[dict[str, Any]]  # the first mismatches: keys, time, served, offline


def training_serving_skew(
    scan: WindowScan,
    feature_repo: str,
    feature_service: str,
    timestamp_column: str,
    features: list[str],
    threshold: float,
    sample_rows: int,
) -> tuple[int, list[FeatureSkew]]:
    """The rows compared and, per feature the service joins and the log holds, the skew."""
    from portside.components.features.feast_repo import open_store, resolve_service
    from portside.components.features.pit_join import join_connection
    from portside.components.features.run import choose_engine, join_features, prepare_entity_rows

    store = open_store(feature_repo)
    service = resolve_service(store, feature_service, False)
    compared = [f for f in features if f in service.feature_columns]
    if not compared:
        raise InputDataError(
            f"{scan.path}: none of the logged features ({', '.join(features)}) comes from the "
            f"feature service {feature_service!r}: nothing to compare"
        )
    keys = [*service.join_keys, *service.request_fields]
    served = scan.sample(list(dict.fromkeys([*keys, timestamp_column, *compared])), sample_rows)
    if served.num_rows == 0:
        return 0, []
    entity_rows = served.select([*keys, timestamp_column])
    entity_rows = prepare_entity_rows(entity_rows, service, timestamp_column, str(scan.path))
    if not service.file_sources_only:
        raise ConfigurationError(
            f"{feature_service}: the skew check joins the values as they were known when served "
            "(as_known), which Portside's join computes over Parquet file sources only, not "
            f"{', '.join(service.other_sources)}: check skew on a repo whose offline sources "
            "are files (e.g. an export), or leave feature_repo empty"
        )
    engine = choose_engine("duckdb", service, "as_known")
    with join_connection(entity_rows.num_rows) as connection:
        offline, _ = join_features(
            store, service, entity_rows, engine, timestamp_column, "as_known", connection
        )
    context = served.select([*service.join_keys, timestamp_column])
    return served.num_rows, [
        _compare(name, served.column(name), offline.column(name), context, threshold)
        for name in compared
    ]


def _compare(
    name: str,
    served: pa.ChunkedArray,
    offline: pa.ChunkedArray,
    context: pa.Table,
    threshold: float,
) -> FeatureSkew:
    import numpy as np
    import pyarrow as pa

    served_missing = _missing(served)
    offline_missing = _missing(offline)
    if _is_number(served.type) and _is_number(offline.type):
        a = _floats(served)
        b = _floats(offline)
        equal = np.abs(a - b) <= RELATIVE_TOLERANCE * np.maximum(np.abs(a), np.abs(b))
    else:  # text, booleans, or a number on one side only: compared as text
        a_text = np.asarray(served.cast(pa.string()).to_pylist(), dtype=object)
        b_text = np.asarray(offline.cast(pa.string()).to_pylist(), dtype=object)
        equal = a_text == b_text
    # Missing matches missing only (a null and a NaN are both missing).
    same = (served_missing & offline_missing) | (~served_missing & ~offline_missing & equal)
    mismatched = np.flatnonzero(~same)
    rows = len(same)
    rate = len(mismatched) / rows if rows else 0.0
    examples = [
        {
            **{k: _plain(v) for k, v in context.slice(int(i), 1).to_pylist()[0].items()},
            "served": _plain(served[int(i)].as_py()),
            "offline": _plain(offline[int(i)].as_py()),
        }
        for i in mismatched[:EXAMPLES]
    ]
    return FeatureSkew(
        feature=name,
        compared=rows,
        mismatched=len(mismatched),
        mismatch_rate=rate,
        served_missing=int(served_missing.sum()),
        offline_missing=int(offline_missing.sum()),
        threshold=threshold,
        status="skew" if rate > threshold else "ok",
        examples=examples,
    )


def _is_number(kind: pa.DataType) -> bool:
    import pyarrow as pa

    return pa.types.is_floating(kind) or pa.types.is_integer(kind)


def _missing(column: pa.ChunkedArray) -> Any:
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    missing = pc.is_null(column, nan_is_null=pa.types.is_floating(column.type))
    return np.asarray(missing.to_numpy(zero_copy_only=False), dtype=bool)


def _floats(column: pa.ChunkedArray) -> Any:
    import numpy as np
    import pyarrow as pa

    values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
    return np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0)


def _plain(value: Any) -> Any:
    """JSON-ready: times as ISO text."""
    return value.isoformat() if hasattr(value, "isoformat") else value
