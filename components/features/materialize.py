"""Materialization: the latest feature row per entity, from the offline sources to the online store.

Two modes, both computed in one DuckDB query and written in bounded batches (memory stays
flat however many entities there are):

- ``landed`` (default): selects the rows that *landed* in [start, end] (available once both
  their event and created timestamps have passed, as the ``as_known`` training join counts
  them), keeps per entity the greatest (event, created) time and writes it only if it is not
  older than what the online store holds. Late and backfilled rows thus reach the online
  store, and after materializing up to T the online state is the ``as_known`` state at T.
- ``feast``: what ``feast materialize`` does (start <= event_timestamp <= end, greatest
  (event, created) per entity, written under the rule of Feast's own writer for the store:
  SQLite unconditionally, Redis only if newer than the stored row). Rows that land after
  their interval was materialized never reach the online store.

An equal event time counts as newer in ``landed``: in forward runs it is a later-created
correction. SQLite and Redis are written in bulk in Feast's own layout (`online_write`);
other online stores through Feast's `online_write_batch`. The registry records each
interval, so `materialize_incremental` continues where the last run ended, as Feast's does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from portside.components.errors import ConfigurationError

if TYPE_CHECKING:
    from feast import FeatureStore, FeatureView

DEFAULT_BATCH_ROWS = 10_000
Mode = Literal["landed", "feast"]
MODES = ("landed", "feast")


@dataclass(frozen=True)
class MaterializedView:
    name: str
    start: datetime
    end: datetime
    rows: int
    seconds: float


def materialize(
    repo_path: str | Path,
    start: datetime,
    end: datetime,
    views: list[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: bool = True,
    mode: Mode = "landed",
) -> list[MaterializedView]:
    """Materialize [start, end] of the chosen (default: all online) feature views."""
    from portside.components.features.feast_repo import open_store

    start, end = _utc(start, "start"), _utc(end, "end")
    if start >= end:
        raise ConfigurationError(f"start ({start}) must be before end ({end})")
    _check_mode(mode)
    store = open_store(repo_path)
    return [
        _materialize_view(store, view, start, end, batch_rows, progress, mode)
        for view in _online_views(store, views)
    ]


def materialize_incremental(
    repo_path: str | Path,
    end: datetime,
    views: list[str] | None = None,
    batch_rows: int = DEFAULT_BATCH_ROWS,
    progress: bool = True,
    mode: Mode = "landed",
) -> list[MaterializedView]:
    """Materialize each view from where its last materialization ended (or end - ttl) to end.

    A first run starts at end - ttl: older rows would be expired at end anyway.
    """
    from portside.components.features.feast_repo import open_store

    end = _utc(end, "end")
    _check_mode(mode)
    store = open_store(repo_path)
    done = []
    for view in _online_views(store, views):
        start = view.most_recent_end_time or end - (view.ttl or timedelta(days=365))
        start = _utc(start, "start")
        if start >= end:
            print(f"{view.name}: already materialized up to {start:%Y-%m-%d %H:%M:%S}")
            continue
        done.append(_materialize_view(store, view, start, end, batch_rows, progress, mode))
    return done


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")


def _utc(moment: datetime, name: str) -> datetime:
    if not isinstance(moment, datetime):
        raise ConfigurationError(f"{name} must be a datetime, got {moment!r}")
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def _online_views(store: FeatureStore, names: list[str] | None) -> list[FeatureView]:
    online = {view.name: view for view in store.list_feature_views() if view.online}
    if names is None:
        return list(online.values())
    unknown = [name for name in names if name not in online]
    if unknown:
        raise ConfigurationError(
            f"not an online feature view: {', '.join(unknown)}; known: {', '.join(online)}"
        )
    return [online[name] for name in names]


def latest_rows_query(
    view: FeatureView, repo_path: str, mode: Mode = "landed", order_by: list[str] | None = None
) -> str:
    """SQL for the latest row per entity among those selected by $start and $end.

    landed: rows available (event and created time passed) within [$start, $end];
    feast: rows with $start <= event_timestamp <= $end. `order_by`: SQL terms to sort by.
    """
    from feast import FileSource

    source = view.batch_source
    if not isinstance(source, FileSource) or not source.path.endswith(".parquet"):
        raise ConfigurationError(
            f"{view.name}: materialize reads Parquet file sources; use `feast materialize` "
            "for other offline stores"
        )
    path = source.path if Path(source.path).is_absolute() else str(Path(repo_path) / source.path)
    to_source = {feature: column for column, feature in (source.field_mapping or {}).items()}
    ts, created = source.timestamp_field, source.created_timestamp_column or source.timestamp_field
    keys = [f'"{key}"' for key in view.join_keys]
    columns = [f'"{to_source.get(f.name, f.name)}" AS "{f.name}"' for f in view.features]
    extra = [f'"{ts}"'] + ([f'"{created}"'] if created != ts else [])
    # A row without a created timestamp counts as created when it happened (as in the join).
    selected = f'greatest("{ts}", coalesce("{created}", "{ts}"))' if mode == "landed" else f'"{ts}"'
    return f"""
        SELECT {", ".join(keys + columns + extra)}
        FROM read_parquet('{path.replace("'", "''")}')
        WHERE "{ts}" IS NOT NULL AND {selected} BETWEEN $start AND $end
        QUALIFY row_number() OVER (
            PARTITION BY {", ".join(keys)} ORDER BY "{ts}" DESC, "{created}" DESC) = 1
        {"ORDER BY " + ", ".join(order_by) if order_by else ""}
    """


def _materialize_view(
    store: FeatureStore,
    view: FeatureView,
    start: datetime,
    end: datetime,
    batch_rows: int,
    progress: bool,
    mode: Mode,
) -> MaterializedView:
    import duckdb
    from tqdm import tqdm

    from portside.components.features.online_values import key_order
    from portside.components.features.online_write import Overwrite, feast_rule, open_writer

    started = time.perf_counter()
    join_keys = {col.name: col.dtype.to_value_type() for col in view.entity_columns}
    query = latest_rows_query(view, str(store.repo_path), mode, key_order(join_keys))
    con = duckdb.connect()
    reader = con.sql(query, params={"start": start, "end": end}).to_arrow_reader(batch_rows)
    rule = Overwrite.NOT_OLDER if mode == "landed" else feast_rule(store)
    rows = 0
    with (
        open_writer(store, view, rule) as write,
        tqdm(desc=view.name, unit=" rows", disable=not progress) as bar,
    ):
        for batch in reader:
            if batch.num_rows == 0:
                continue
            rows += write(batch)
            bar.update(batch.num_rows)
    store.registry.apply_materialization(view, store.project, start, end)
    return MaterializedView(view.name, start, end, rows, round(time.perf_counter() - started, 3))
