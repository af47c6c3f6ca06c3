"""Point-in-time join of entity rows to feature view sources, in DuckDB.

For each entity row (key, t) and each view, the value used is the row with the greatest
(event_timestamp, created_timestamp) among the rows *available* at t, provided its event
timestamp lies within the view's TTL: t - ttl <= event_timestamp <= t. "Available" depends on
the semantics:

- ``as_known`` (default): a row is available once it happened and landed,
  max(event_timestamp, created_timestamp) <= t. A backfilled row created after t is not used,
  because at t nobody knew it. This is Feast's ``filter_by_created_timestamp=True``.
- ``feast``: Feast's default; a row is available once it happened, event_timestamp <= t, and
  the created timestamp only breaks ties between rows with the same event timestamp.

Both are one query: a running maximum of (event_timestamp, created_timestamp) per entity,
ordered by availability time, joined to the entity rows with an ASOF LEFT JOIN. Every entity
row comes back exactly once, in input order; rows without usable history get nulls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

Semantics = Literal["as_known", "feast"]
ROW_ID = "__portside_row_id"


@dataclass(frozen=True)
class ViewSource:
    """One feature view as the join needs it: where its rows are and what to take."""

    name: str
    path: str
    join_keys: tuple[str, ...]
    timestamp_field: str
    created_timestamp_field: str | None
    ttl: timedelta | None
    # (column in the source, column in the output)
    features: tuple[tuple[str, str], ...]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _states_query(view: ViewSource, semantics: Semantics) -> str:
    """Per entity, the rows that were the best known row when they became available.

    The best row is the greatest (event, created), packed into one HUGEINT sort key so the
    running max is cheap. The state at time t is the latest of these rows available at t: a
    row that was not the best when it arrived never becomes the best later.
    """
    keys = ", ".join(_quote(k) for k in view.join_keys)
    ts = _quote(view.timestamp_field)
    # A row without a created timestamp counts as created when it happened.
    created = (
        f"coalesce({_quote(view.created_timestamp_field)}, {ts})"
        if view.created_timestamp_field
        else ts
    )
    available = f"greatest({ts}, {created})" if semantics == "as_known" else ts
    features = ", ".join(f"{_quote(src)} AS {_quote(out)}" for src, out in view.features)
    path = view.path.replace("'", "''")
    return f"""
        SELECT {keys}, {ts}::TIMESTAMPTZ AS __ts, {available}::TIMESTAMPTZ AS __available,
               {features}
        FROM read_parquet('{path}')
        WHERE {ts} IS NOT NULL AND ({keys}) IN (SELECT DISTINCT {keys} FROM entities)
        QUALIFY epoch_us({ts})::HUGEINT * {2**64} + epoch_us({created}) = max(
            epoch_us({ts})::HUGEINT * {2**64} + epoch_us({created})) OVER (
            PARTITION BY {keys} ORDER BY {available}
            RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
    """


def history_flag(view: ViewSource) -> str:
    """Name of the optional column telling whether a row found usable history in `view`."""
    return f"__has_history__{view.name}"


def _join_query(
    views: list[ViewSource], entity_ts: str, semantics: Semantics, flag_history: bool
) -> str:
    """ASOF LEFT JOIN the entity rows to every view's states; features outside TTL are null."""
    ctes, joins, columns = [], [], []
    t = f"e.{_quote(entity_ts)}"
    for i, view in enumerate(views):
        alias = f"s{i}"
        ctes.append(f"{alias}_states AS ({_states_query(view, semantics)})")
        match = " AND ".join(f"e.{_quote(k)} = {alias}.{_quote(k)}" for k in view.join_keys)
        joins.append(
            f"ASOF LEFT JOIN {alias}_states {alias} ON {match} AND {t} >= {alias}.__available"
        )
        fresh = f"{alias}.__ts IS NOT NULL"
        if view.ttl:
            ttl_us = view.ttl // timedelta(microseconds=1)
            fresh += f" AND {alias}.__ts >= {t} - to_microseconds({ttl_us})"
        columns += [
            f"CASE WHEN {fresh} THEN {alias}.{_quote(out)} END AS {_quote(out)}"
            for _, out in view.features
        ]
        if flag_history:
            columns.append(f"({fresh}) AS {_quote(history_flag(view))}")
    return (
        f"WITH {', '.join(ctes)} SELECT {', '.join(columns)} FROM entities e {' '.join(joins)} "
        f"ORDER BY e.{ROW_ID}"
    )


def point_in_time_join(
    entity_rows: pa.Table,
    views: list[ViewSource],
    event_timestamp_column: str = "event_timestamp",
    semantics: Semantics = "as_known",
    connection: duckdb.DuckDBPyConnection | None = None,
    flag_history: bool = False,
) -> pa.Table:
    """Return entity_rows (same order, same count) with every view's features appended.

    With `flag_history`, a boolean column per view (`history_flag(view)`) says whether the row
    found a usable feature row there (False: no history, or only rows older than the TTL).

    The entity timestamp column must already be a UTC microsecond timestamp (see
    `components.features.entity_rows.normalize_timestamps`).
    """
    import duckdb
    import numpy as np
    import pyarrow as pa

    if semantics not in ("as_known", "feast"):
        raise ValueError(f"semantics must be 'as_known' or 'feast', got {semantics!r}")
    outputs = [o for v in views for _, o in v.features]
    repeated = sorted({o for o in outputs if outputs.count(o) > 1})
    if repeated:
        raise ValueError(
            f"feature(s) {', '.join(repeated)} come from more than one view; use full feature names"
        )
    clashes = [o for o in outputs if o in entity_rows.column_names]
    if clashes:
        raise ValueError(
            f"entity rows already have column(s) {', '.join(clashes)} that the feature views "
            "provide; rename them or use full feature names"
        )
    con = connection or duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")  # naive source timestamps are UTC, as in Feast
    with_ids = entity_rows.append_column(
        ROW_ID, pa.array(np.arange(entity_rows.num_rows, dtype=np.int64))
    )
    con.register("entities", with_ids)
    if views:
        joined = con.sql(
            _join_query(views, event_timestamp_column, semantics, flag_history)
        ).to_arrow_table()
        for name in joined.column_names:
            entity_rows = entity_rows.append_column(name, joined.column(name))
    con.unregister("entities")
    return entity_rows
