"""Count a window's values on the baseline's bins, in DuckDB over the Parquet files.

One scan of the window computes every feature's counts (a bin index per number, a histogram per
category), so memory stays bounded by the number of bins and categories, not by the rows: a
window of 10M rows is never loaded into pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from components.errors import InputDataError


@dataclass(frozen=True)
class WindowCounts:
    rows: int  # rows in the window (after the time filter)
    numeric: dict[str, list[int]]  # per feature: counts per drift bin, then the missing count
    categorical: dict[str, dict[str, int]]  # per feature: count per value (missing under None)


def parquet_files(path: Path) -> list[Path]:
    """A Parquet file, or every Parquet file below a folder (a training set, a prediction log
    partitioned by date); files being written (hidden names) are left out."""
    if path.is_file():
        return [path]
    files = sorted(
        p
        for p in path.rglob("*.parquet")
        if not any(part.startswith(".") for part in p.relative_to(path).parts)
    )
    if not files:
        raise InputDataError(f"{path}: no Parquet files in the window")
    return files


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def count_window(
    window: Path,
    numeric_edges: dict[str, list[float]],
    categorical: list[str],
    timestamp_column: str,
    start: datetime | None,
    end: datetime | None,
) -> WindowCounts:
    """Counts of every feature on its bins, for rows with start <= timestamp < end."""
    import duckdb

    files = parquet_files(window)
    connection = duckdb.connect()
    try:
        connection.execute("SET TimeZone = 'UTC'")  # a naive timestamp means UTC, as _time's
        paths = ", ".join(_literal(str(f)) for f in files)
        source = f"read_parquet([{paths}], union_by_name = true)"
        described = connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        types = {row[0]: row[1] for row in described}
        wanted = [*numeric_edges, *categorical, *([timestamp_column] if start or end else [])]
        missing = [name for name in wanted if name not in types]
        if missing:
            raise InputDataError(
                f"{window}: the window lacks column(s) {', '.join(missing)} that the baseline has"
            )
        selects = ["count(*) AS __rows"]
        for name, edges in numeric_edges.items():
            value = f"CAST({_quoted(name)} AS DOUBLE)"
            # An edge as text cast to DOUBLE: repr round-trips exactly, 'inf' included.
            index = " + ".join(
                f"({value} > CAST({_literal(repr(edge))} AS DOUBLE))::INTEGER" for edge in edges
            )
            selects.append(
                f"histogram(CASE WHEN {value} IS NULL OR isnan({value}) THEN -1 "
                f"ELSE {index or '0'} END) AS {_quoted(name)}"
            )
        for name in categorical:
            selects.append(f"histogram({_category(name, types[name])}) AS {_quoted(name)}")
            selects.append(f"count(*) - count({_quoted(name)}) AS {_quoted(name + '__missing')}")
        where, parameters = _time_filter(timestamp_column, start, end)
        query = f"SELECT {', '.join(selects)} FROM {source} {where}"
        row = connection.execute(query, parameters).fetchone()
        names = [d[0] for d in connection.description]
    finally:
        connection.close()
    record = dict(zip(names, row, strict=True))
    numeric = {
        name: _numeric_counts(record[name], len(edges) + 1) for name, edges in numeric_edges.items()
    }
    counts = {name: dict(record[name] or {}) for name in categorical}
    for name in categorical:
        if record[f"{name}__missing"]:
            counts[name][None] = int(record[f"{name}__missing"])  # type: ignore[index]
    return WindowCounts(rows=int(record["__rows"]), numeric=numeric, categorical=counts)


def _category(name: str, kind: str) -> str:
    """A category as the baseline spells it (Python's str(): booleans are True/False)."""
    if kind == "BOOLEAN":
        return f"CASE WHEN {_quoted(name)} THEN 'True' WHEN NOT {_quoted(name)} THEN 'False' END"
    return f"CAST({_quoted(name)} AS VARCHAR)"


def _numeric_counts(histogram: dict[int, int] | None, bins: int) -> list[int]:
    counts = [0] * (bins + 1)  # the last one: missing values
    for index, n in (histogram or {}).items():
        counts[bins if index == -1 else index] += int(n)
    return counts


def _time_filter(
    column: str, start: datetime | None, end: datetime | None
) -> tuple[str, list[Any]]:
    clauses, parameters = [], []
    if start is not None:
        clauses.append(f"{_quoted(column)} >= ?")
        parameters.append(start)
    if end is not None:
        clauses.append(f"{_quoted(column)} < ?")
        parameters.append(end)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), parameters
