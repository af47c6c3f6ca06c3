"""The monitoring window in DuckDB over its Parquet files: counts on the baseline's bins,
samples, and the queries the skew and quality checks make.

One scan of the window computes every feature's counts (a bin index per number, a histogram per
category), so memory stays bounded by the number of bins and categories, not by the rows: a
window of 10M rows is never loaded into pandas.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.errors import InputDataError

if TYPE_CHECKING:
    import pyarrow as pa


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


def quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class WindowScan:
    """The window's Parquet files in one DuckDB connection: `relation` is the window's rows
    (after the time filter, start <= timestamp < end) for every query the checks make."""

    def __init__(
        self,
        window: Path,
        timestamp_column: str,
        start: datetime | None,
        end: datetime | None,
        arm: str = "",
    ) -> None:
        import duckdb

        self.path = window
        files = parquet_files(window)
        self.connection = duckdb.connect()
        self.connection.execute("SET TimeZone = 'UTC'")  # a naive timestamp means UTC
        paths = ", ".join(literal(str(f)) for f in files)
        # can_have_nan: pyarrow writes min/max without the NaNs, and DuckDB (2.0) would take
        # the statistics' word that a column has none and fold isnan() to false
        # (duckdb/duckdb#25521): NaN would count as a value above every bin, not as missing.
        source = f"read_parquet([{paths}], union_by_name = true, can_have_nan = true)"
        described = self.connection.execute(f"DESCRIBE SELECT * FROM {source}").fetchall()
        self.types: dict[str, str] = {row[0]: row[1] for row in described}
        if (start or end) and timestamp_column not in self.types:
            raise InputDataError(f"{window}: the window has no time column {timestamp_column!r}")
        where, self.parameters = _time_filter(timestamp_column, start, end)
        # Every model's rows (quality compares the arms) ...
        self.all_arms = f"(SELECT * FROM {source} {where})"
        # ... and, on a prediction log, the arm whose model the baseline describes: a canary's
        # or a shadow's scores and inputs are another model's (the shadow repeats requests).
        self.arm_parameters = list(self.parameters)
        if arm and "arm" in self.types:
            joiner = "AND" if where else "WHERE"
            self.relation = f"(SELECT * FROM {source} {where} {joiner} arm = ?)"
            self.arm_parameters.append(arm)
        else:
            self.relation = self.all_arms

    def __enter__(self) -> WindowScan:
        return self

    def __exit__(self, *exc: object) -> None:
        self.connection.close()

    def require(self, columns: list[str], why: str) -> None:
        missing = [name for name in columns if name not in self.types]
        if missing:
            raise InputDataError(
                f"{self.path}: the window lacks column(s) {', '.join(missing)} {why}"
            )

    def query(self, sql: str, all_arms: bool = False) -> Any:
        """`sql` with {window} standing (once) for the window's rows, of the chosen arm or of
        every arm; the executed cursor. A value DuckDB cannot convert names the window."""
        import duckdb

        relation, parameters = (
            (self.all_arms, self.parameters) if all_arms else (self.relation, self.arm_parameters)
        )
        try:
            return self.connection.execute(sql.replace("{window}", relation), parameters)
        except duckdb.ConversionException as error:
            raise InputDataError(f"{self.path}: {error}") from error

    def counts(self, numeric_edges: dict[str, list[float]], categorical: list[str]) -> WindowCounts:
        """Counts of every feature on its bins, in one scan."""
        self.require([*numeric_edges, *categorical], "that the baseline has")
        selects = ["count(*) AS __rows"]
        for name, edges in numeric_edges.items():
            value = f"CAST({quoted(name)} AS DOUBLE)"
            # An edge as text cast to DOUBLE: repr round-trips exactly, 'inf' included.
            index = " + ".join(
                f"({value} > CAST({literal(repr(edge))} AS DOUBLE))::INTEGER" for edge in edges
            )
            selects.append(
                f"histogram(CASE WHEN {value} IS NULL OR isnan({value}) THEN -1 "
                f"ELSE {index or '0'} END) AS {quoted(name)}"
            )
        for name in categorical:
            selects.append(f"histogram({_category(name, self.types[name])}) AS {quoted(name)}")
            selects.append(f"count(*) - count({quoted(name)}) AS {quoted(name + '__missing')}")
        cursor = self.query(f"SELECT {', '.join(selects)} FROM {{window}}")
        row = cursor.fetchone()
        names = [d[0] for d in cursor.description]
        record = dict(zip(names, row, strict=True))
        numeric = {
            name: _numeric_counts(record[name], len(edges) + 1)
            for name, edges in numeric_edges.items()
        }
        counts = {name: dict(record[name] or {}) for name in categorical}
        for name in categorical:
            if record[f"{name}__missing"]:
                counts[name][None] = int(record[f"{name}__missing"])  # type: ignore[index]
        return WindowCounts(rows=int(record["__rows"]), numeric=numeric, categorical=counts)

    def sample(self, columns: list[str], rows: int, seed: int = 7) -> pa.Table:
        """At most `rows` of the window's rows (a reservoir sample, the same for the same
        window), with `columns`."""
        self.require(columns, "that the check needs")
        selected = ", ".join(quoted(c) for c in columns)
        return self.query(
            f"SELECT {selected} FROM {{window}} USING SAMPLE reservoir({int(rows)} ROWS) "
            f"REPEATABLE ({int(seed)})"
        ).to_arrow_table()


def _category(name: str, kind: str) -> str:
    """A category as the baseline spells it (Python's str(): booleans are True/False)."""
    if kind == "BOOLEAN":
        return f"CASE WHEN {quoted(name)} THEN 'True' WHEN NOT {quoted(name)} THEN 'False' END"
    return f"CAST({quoted(name)} AS VARCHAR)"


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
        clauses.append(f"{quoted(column)} >= ?")
        parameters.append(start)
    if end is not None:
        clauses.append(f"{quoted(column)} < ?")
        parameters.append(end)
    return ("WHERE " + " AND ".join(clauses) if clauses else ""), parameters
