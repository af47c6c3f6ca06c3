"""Checks and normalizes labelled entity rows before they meet the feature store.

Every problem is an `InputDataError` naming the file and the column; nothing is dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from components.errors import InputDataError

if TYPE_CHECKING:
    import pyarrow as pa


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
