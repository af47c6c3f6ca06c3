"""The `features` component: a point-in-time correct training set from Feast."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.common.artifacts import MANIFEST_FILE, TRAINING_SET_FILE, read_record
from portside.components.errors import ConfigurationError, InputDataError
from portside.components.features.entity_rows import (
    check_integer_keys,
    normalize_timestamps,
    open_entity_rows,
    select_window,
)
from portside.components.features.pit_join import join_connection

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from portside.components.features.feast_repo import ResolvedService


@dataclass
class FeaturesManifest:
    feature_service: str
    feature_service_hash: str
    point_in_time: str
    engine: str
    rows_in: int
    rows_out: int
    duplicate_entity_rows: int
    time_range: tuple[str, str]
    # The training set's schema, which train turns into the model's inputs.
    entity_keys: list[str]
    timestamp_column: str
    label_column: str
    label_rate: float | None
    features: list[str]  # the FeatureService's features, as the training set names them
    request_fields: list[str]  # entity-row columns the on-demand views read
    null_counts: dict[str, int]
    rows_without_history: dict[str, int]
    content_fingerprint: str
    # path -> content hash of the definitions and sources read; for cache revalidation only,
    # not written to manifest.json (it holds paths, and the training set's content does not)
    read: dict[str, str] = field(default_factory=dict)
    extra: dict[str, object] = field(default_factory=dict)


def run(
    entity_rows: str,
    training_set: str,
    feature_service: str,
    label_column: str,
    feature_repo: str = "feature_repo",
    event_timestamp_column: str = "event_timestamp",
    point_in_time: str = "as_known",
    full_feature_names: bool = False,
    engine: str = "auto",
    rows_from: str = "",
    rows_until: str = "",
) -> FeaturesManifest:
    """Build the training set; write `training_set.parquet` and `manifest.json` into
    the `training_set` directory and return the manifest. The manifest holds no paths or
    times (the run manifest does), so the same training set has the same content hash.

    feature_service and label_column are required: the model's names come from the caller.
    engine: "duckdb" (Portside's point-in-time join over Parquet sources), "feast" (the
    repo's configured offline store, e.g. BigQuery; Feast's semantics), or "auto" (duckdb
    when every source is a Parquet file, else feast). rows_from/rows_until: only the entity
    rows in [rows_from, rows_until) (ISO times; empty: unbounded), e.g. a run's data interval.
    """
    from portside.components.features.feast_repo import open_store, resolve_service

    _require(feature_service=feature_service, label_column=label_column)
    store = open_store(feature_repo)
    service = resolve_service(store, feature_service, full_feature_names)
    engine = choose_engine(engine, service, point_in_time)
    # Hashing the definitions and sources (for cache revalidation) releases the GIL: it runs
    # while the entity rows are read and joined.
    hashing = ThreadPoolExecutor(max_workers=1)
    files_read = hashing.submit(_files_read, store, service, engine)
    hashing.shutdown(wait=False)
    table = load_entity_rows(Path(entity_rows), service, event_timestamp_column, label_column)
    table, outside = select_window(
        table, event_timestamp_column, rows_from, rows_until, str(entity_rows)
    )
    # One DuckDB database for the join and the manifest's count: opening one costs ~50 ms.
    with join_connection(table.num_rows) as connection:
        result, without_history = join_features(
            store, service, table, engine, event_timestamp_column, point_in_time, connection
        )

        out_dir = Path(training_set)
        out_dir.mkdir(parents=True, exist_ok=True)
        # The Parquet write and the manifest's summaries release the GIL: on two cores they overlap.
        with ThreadPoolExecutor(max_workers=1) as writer:
            written_file = writer.submit(write_training_set, result, out_dir / TRAINING_SET_FILE)
            manifest = _manifest(
                table,
                result,
                service,
                event_timestamp_column,
                label_column,
                point_in_time,
                full_feature_names,
                without_history,
                engine,
                connection,
            )
            written_file.result()
        if rows_from or rows_until:  # the window shapes the set: say what it left out
            manifest.extra["rows_window"] = [rows_from, rows_until]
            manifest.extra["rows_outside_window"] = outside
        manifest.read = files_read.result()
        written = {k: v for k, v in asdict(manifest).items() if k != "read"}
        (out_dir / MANIFEST_FILE).write_text(json.dumps(written, indent=2))
        return manifest


def write_training_set(table: pa.Table, path: Path) -> None:
    """Parquet, snappy; dictionary encoding for text columns only (it slows the write of
    numeric columns and seldom makes them smaller)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    text = [
        field.name
        for field in table.schema
        if pa.types.is_string(field.type) or pa.types.is_large_string(field.type)
    ]
    pq.write_table(table, path, use_dictionary=text)


def _require(**values: str) -> None:
    missing = [name for name, value in values.items() if not value]
    if missing:
        flags = ", ".join("--" + name.replace("_", "-") for name in missing)
        raise ConfigurationError(f"{flags}: required; the caller names the model's features")


def load_manifest(training_set_dir: Path) -> FeaturesManifest:
    """The manifest.json the features component wrote next to the training set."""
    return read_record(FeaturesManifest, training_set_dir / MANIFEST_FILE, "features")


def _files_read(store: object, service: ResolvedService, engine: str) -> dict[str, str]:
    """The definitions and Parquet sources behind this training set, by content."""
    from portside.components.lineage import content_hash

    if engine != "duckdb":
        return {}  # a warehouse table cannot be fingerprinted from here
    paths = [str(store.repo_path), *(view.path for view in service.views)]
    if not all(Path(path).exists() for path in paths):
        return {}  # e.g. a glob of files: not fingerprinted, never reused
    return {path: content_hash(path) for path in paths}


def join_features(
    store: object,
    service: ResolvedService,
    table: pa.Table,
    engine: str,
    event_timestamp_column: str,
    point_in_time: str,
    connection: object = None,
) -> tuple[pa.Table, dict[str, int]]:
    """Entity rows (checked by `prepare_entity_rows`) with the service's features as they were
    known at each row's time, on-demand ones included: every row once, in input order. Also
    per view, the rows that found no history. `engine` as `choose_engine` returns it;
    `connection`: a DuckDB connection to reuse (duckdb engine), e.g. across chunks."""
    if engine == "duckdb":
        result, without_history = build_training_set(
            table, service, event_timestamp_column, point_in_time, connection
        )
    else:
        result, without_history = feast_offline_store_join(
            store, table, service.name, service.full_feature_names
        )
    if result.num_rows != table.num_rows:  # the one invariant this join exists for
        raise RuntimeError(f"bug: {table.num_rows} entity rows in, {result.num_rows} out")
    absent = [c for c in service.feature_columns if c not in result.column_names]
    if absent:  # both engines must name the service's features the same way
        raise RuntimeError(f"bug: the {engine} engine did not produce {', '.join(absent)}")
    return result, without_history


def choose_engine(engine: str, service: ResolvedService, point_in_time: str) -> str:
    """auto/duckdb/feast -> the join engine that can serve this service and semantics."""
    if engine == "auto":
        engine = "duckdb" if service.file_sources_only else "feast"
    if engine not in ("duckdb", "feast"):
        raise ConfigurationError(f"engine must be auto, duckdb or feast, got {engine!r}")
    others = ", ".join(service.other_sources)
    if engine == "duckdb" and others:
        raise ConfigurationError(
            f"{service.name}: the duckdb engine reads Parquet file sources only, not {others}; "
            "use --engine feast for the repo's offline store (e.g. BigQuery)"
        )
    if engine == "feast" and point_in_time != "feast":
        reason = f" (the sources {others} need it)" if others else ""
        raise ConfigurationError(
            f"{service.name}: the feast engine{reason} implements Feast's point-in-time "
            "semantics only; pass --point-in-time feast"
        )
    return engine


def feast_offline_store_join(
    store: object, table: pa.Table, feature_service: str, full_feature_names: bool
) -> tuple[pa.Table, dict[str, int]]:
    """The repo's own offline store (DuckDB, BigQuery, ...), rows back in input order.

    Rows without history are counted as rows whose features of a view are all null.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    row_id = "__portside_row_id"
    frame = table.append_column(row_id, pa.array(np.arange(table.num_rows))).to_pandas()
    service = store.get_feature_service(feature_service)
    job = store.get_historical_features(
        entity_df=frame, features=service, full_feature_names=full_feature_names
    )
    result = job.to_arrow()
    result = result.take(pc.sort_indices(result.column(row_id))).drop_columns([row_id])
    if result.num_rows != table.num_rows:
        raise InputDataError(
            f"the offline store returned {result.num_rows} of {table.num_rows} entity rows; "
            "its point-in-time join drops rows (use the duckdb engine)"
        )
    without_history = {}
    on_demand = {view.name for view in store.list_on_demand_feature_views()}
    for projection in service.feature_view_projections:
        names = [
            f"{projection.name_to_use()}__{f.name}" if full_feature_names else f.name
            for f in projection.features
        ]
        present = [n for n in names if n in result.column_names]
        if present and projection.name not in on_demand:
            nulls = [pc.is_null(result.column(n)) for n in present]
            all_null = nulls[0]
            for mask in nulls[1:]:
                all_null = pc.and_(all_null, mask)
            without_history[projection.name] = pc.sum(all_null).as_py() or 0
    return result, without_history


def load_entity_rows(
    path: Path, service: ResolvedService, event_timestamp_column: str, label_column: str
) -> pa.Table:
    required = entity_row_columns(service, event_timestamp_column, label_column)
    rows = open_entity_rows(path, required, "a training set needs at least one")
    return prepare_entity_rows(rows.read(), service, event_timestamp_column, str(path))


def entity_row_columns(
    service: ResolvedService, event_timestamp_column: str, *others: str
) -> list[str]:
    """The columns entity rows must have: keys, time, `others` (a label), request fields."""
    return [*service.join_keys, event_timestamp_column, *others, *service.request_fields]


def prepare_entity_rows(
    table: pa.Table, service: ResolvedService, event_timestamp_column: str, source: str
) -> pa.Table:
    """Entity rows (with the `entity_row_columns`) checked and ready for `join_features`:
    integer keys without nulls, the time as a UTC microsecond timestamp."""
    check_integer_keys(table, service.join_keys, source)
    # Input metadata (e.g. pandas' record of the original time zone) would misdescribe the
    # normalized columns in the output.
    table = table.replace_schema_metadata(None)
    return normalize_timestamps(table, event_timestamp_column, source)


def build_training_set(
    table: pa.Table,
    service: ResolvedService,
    event_timestamp_column: str,
    point_in_time: str,
    connection: object = None,
) -> tuple[pa.Table, dict[str, int]]:
    """Join features (DuckDB point-in-time join), then apply the on-demand views.

    Returns the training set and, per view, the number of rows that found no usable history.
    """
    import pyarrow.compute as pc

    from portside.components.features.pit_join import history_flag, point_in_time_join

    result = point_in_time_join(
        table,
        service.views,
        event_timestamp_column,
        point_in_time,
        connection=connection,
        flag_history=True,
    )
    without_history = {}
    for view in service.views:
        flag = history_flag(view)
        without_history[view.name] = result.num_rows - pc.sum(result.column(flag)).as_py()
        result = result.drop_columns([flag])
    return apply_on_demand(result, service), without_history


def apply_on_demand(table: pa.Table, service: ResolvedService) -> pa.Table:
    """Append the on-demand views' features, named as Feast names them for this service.

    Training and the online lookup both call this, so serving computes them the same way.
    """
    full = service.full_feature_names
    for odfv in service.on_demand_views:
        inputs = table.select([c for c in table.column_names if c in _on_demand_inputs(odfv)])
        transformed = odfv.transform_arrow(inputs, full_feature_names=full)
        projection = odfv.projection
        for feature in projection.features:
            name = f"{projection.name_to_use()}__{feature.name}" if full else feature.name
            if name in transformed.column_names and name not in table.column_names:
                table = table.append_column(name, transformed.column(name))
    return table


def _on_demand_inputs(odfv: object) -> set[str]:
    """The columns an on-demand view may read: its sources' features (short and full names)
    and its request fields. Only these are handed to it (a pandas view converts its input)."""
    names = set()
    for projection in odfv.source_feature_view_projections.values():
        for feature in projection.features:
            names |= {feature.name, f"{projection.name_to_use()}__{feature.name}"}
            names.add(f"{projection.name}__{feature.name}")
    for request in odfv.source_request_sources.values():
        names |= {field.name for field in request.schema}
    return names


def content_fingerprint(table: pa.Table) -> str:
    """sha256 over the schema and every value, in row order: each column's validity, then its
    values (nulls as zeros or empty strings), whatever the chunking."""
    import numpy as np

    digest = hashlib.sha256(table.schema.to_string().encode())
    for column in table.columns:
        array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
        if array.null_count:  # which rows are null, one bit each
            valid = array.is_valid().to_numpy(zero_copy_only=False)
            digest.update(b"\x01" + np.packbits(valid).tobytes())
        else:
            digest.update(b"\x00")
        for part in _value_bytes(array):
            digest.update(part)
    return digest.hexdigest()


def _value_bytes(array: pa.Array) -> list[object]:
    """The array's values as byte buffers; null slots do not depend on what they hold."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    kind = array.type
    if pa.types.is_boolean(kind):
        return [pc.fill_null(array, False).to_numpy(zero_copy_only=False).tobytes()]
    if pa.types.is_string(kind) or pa.types.is_binary(kind):
        return _text_bytes(pc.fill_null(array, "") if array.null_count else array, np.int32)
    if pa.types.is_large_string(kind) or pa.types.is_large_binary(kind):
        return _text_bytes(pc.fill_null(array, "") if array.null_count else array, np.int64)
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_temporal(kind):
        width = kind.bit_width // 8
        start = array.offset * width
        data = np.frombuffer(array.buffers()[1], dtype=np.uint8)[start : start + len(array) * width]
        if array.null_count:
            data = data.reshape(-1, width).copy()
            data[~array.is_valid().to_numpy(zero_copy_only=False)] = 0
        return [data]
    # Other types (lists, structs, decimals): Arrow's IPC form of the column.
    sink = pa.BufferOutputStream()
    batch = pa.record_batch([array], names=["value"])
    with pa.ipc.new_stream(sink, batch.schema) as stream:
        stream.write_batch(batch)
    return [sink.getvalue()]


def _text_bytes(array: pa.Array, offset_type: type) -> list[object]:
    import numpy as np

    offsets = np.frombuffer(array.buffers()[1], dtype=offset_type)
    offsets = offsets[array.offset : array.offset + len(array) + 1]
    data = memoryview(array.buffers()[2] or b"")[offsets[0] : offsets[-1]]
    return [np.diff(offsets).tobytes(), data]


def _manifest(
    table: pa.Table,
    result: pa.Table,
    service: ResolvedService,
    ts_column: str,
    label_column: str,
    point_in_time: str,
    full_feature_names: bool,
    without_history: dict[str, int],
    engine: str,
    connection: duckdb.DuckDBPyConnection,
) -> FeaturesManifest:
    import pyarrow.compute as pc

    features = service.feature_columns
    ts = table.column(ts_column)
    label = table.column(label_column)
    distinct = _distinct_rows(table.select([*service.join_keys, ts_column]), connection)
    return FeaturesManifest(
        feature_service=service.name,
        feature_service_hash=service.definition_hash,
        point_in_time=point_in_time,
        engine=engine,
        rows_in=table.num_rows,
        rows_out=result.num_rows,
        duplicate_entity_rows=table.num_rows - distinct,
        time_range=(str(pc.min(ts)), str(pc.max(ts))),
        entity_keys=service.join_keys,
        timestamp_column=ts_column,
        label_column=label_column,
        label_rate=pc.mean(label.cast("float64")).as_py() if label.type != "string" else None,
        features=features,
        request_fields=service.request_fields,
        null_counts={name: result.column(name).null_count for name in features},
        rows_without_history=without_history,
        content_fingerprint=content_fingerprint(result),
        extra={"full_feature_names": full_feature_names},
    )


def _distinct_rows(table: pa.Table, connection: duckdb.DuckDBPyConnection) -> int:
    connection.register("entity_keys", table)
    try:
        query = "SELECT count(*) FROM (SELECT DISTINCT * FROM entity_keys)"
        return connection.sql(query).fetchall()[0][0]
    finally:
        connection.unregister("entity_keys")
