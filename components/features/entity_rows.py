"""Checks and normalizes labelled entity rows before they meet the feature store.

Every problem is an `InputDataError` naming the file and the column; nothing is dropped.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.errors import ConfigurationError, InputDataError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq


def open_entity_rows(path: Path, columns: list[str], why_rows: str) -> pq.ParquetFile:
    """The entity rows file, opened (not read): it exists, is Parquet, has `columns` and at
    least one row (`why_rows` says why one is needed)."""
    import pyarrow.parquet as pq

    if not path.is_file():
        raise InputDataError(f"{path}: entity rows file not found")
    try:
        rows = pq.ParquetFile(path)
    except Exception as error:  # pyarrow raises several types for unreadable files
        raise InputDataError(f"{path}: not a readable Parquet file ({error})") from error
    require_columns(rows.schema_arrow.empty_table(), columns, str(path))
    if rows.metadata.num_rows == 0:
        raise InputDataError(f"{path}: no entity rows; {why_rows}")
    return rows


def require_columns(table: pa.Table, columns: list[str], source: str) -> None:
    missing = [c for c in columns if c not in table.column_names]
    if missing:
        raise InputDataError(
            f"{source}: missing column(s) {', '.join(map(repr, missing))}; "
            f"present: {', '.join(table.column_names)}"
        )


def check_integer_keys(table: pa.Table, keys: list[str], source: str) -> None:
    import pyarrow as pa

    for key in keys:
        column = table.column(key)
        if not pa.types.is_integer(column.type):
            raise InputDataError(
                f"{source}: column {key!r} has type {column.type}; the entity key is an integer"
            )
        if column.null_count:
            raise InputDataError(f"{source}: column {key!r} has {column.null_count} null key(s)")


def normalize_timestamps(table: pa.Table, column: str, source: str) -> pa.Table:
    """Return the table with `column` as a UTC microsecond timestamp.

    Naive timestamps are taken as UTC (Feast's convention). Nanosecond values are floored to
    the microsecond, which DuckDB needs; flooring never lets a later feature row in.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    values = table.column(column)
    if not pa.types.is_timestamp(values.type):
        raise InputDataError(
            f"{source}: column {column!r} has type {values.type}; expected a timestamp "
            "(naive timestamps are read as UTC)"
        )
    if values.null_count:
        raise InputDataError(
            f"{source}: column {column!r} has {values.null_count} null timestamp(s)"
        )
    unit, tz = values.type.unit, values.type.tz
    if unit == "ns":
        values = pc.floor_temporal(values, unit="microsecond")
    if tz is None:
        values = pc.assume_timezone(values.cast(pa.timestamp(unit)), "UTC")
    values = values.cast(pa.timestamp("us", tz="UTC"), safe=False)
    return table.set_column(table.column_names.index(column), column, values)


def select_window(
    table: pa.Table, column: str, rows_from: str, rows_until: str, source: str
) -> tuple[pa.Table, int]:
    """The rows with rows_from <= `column` < rows_until (an empty bound is no bound) and how
    many were left out. `column` is already a UTC timestamp (normalize_timestamps)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    start, end = _moment(rows_from, "rows_from"), _moment(rows_until, "rows_until")
    if start is not None and end is not None and start >= end:
        raise ConfigurationError(f"--rows-from ({start}) must be before --rows-until ({end})")
    if start is None and end is None:
        return table, 0
    kind = pa.timestamp("us", tz="UTC")
    values = table.column(column)
    keep = None
    if start is not None:
        keep = pc.greater_equal(values, pa.scalar(start, kind))
    if end is not None:
        before = pc.less(values, pa.scalar(end, kind))
        keep = before if keep is None else pc.and_(keep, before)
    selected = table.filter(keep)
    if selected.num_rows == 0:
        raise InputDataError(
            f"{source}: no entity rows with {column} in [{rows_from or '-inf'}, "
            f"{rows_until or '+inf'}) (of {table.num_rows}; rows span "
            f"{pc.min(values)} to {pc.max(values)})"
        )
    return selected, table.num_rows - selected.num_rows


def _moment(text: str, name: str) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        flag = "--" + name.replace("_", "-")
        raise ConfigurationError(f"{flag}: not an ISO date/time: {text!r}") from error
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment
