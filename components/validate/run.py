"""The `validate` component: a Great Expectations gate on the training set.

Outputs, in the `validation` directory, written whether the gate passes or not:
  result.json       the GX suite validation result
  report.html       one row per expectation, failures first
  statistics.json   per-column baseline for drift checks (see statistics.py)
  summary.json      passed, failures ({column, rule, message}), suite and input hashes
Then, if any expectation failed, GateFailed: downstream must not run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.common.artifacts import (
    MANIFEST_FILE,
    STATISTICS_FILE,
    TRAINING_SET_FILE,
    VALIDATION_REPORT_FILE,
    VALIDATION_RESULT_FILE,
    VALIDATION_SUMMARY_FILE,
    read_json_object,
    read_training_table,
)
from portside.components.errors import ConfigurationError, GateFailed
from portside.components.lineage import content_hash
from portside.components.validate.failures import Failure, failures
from portside.components.validate.suite import load_suite

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SCHEMA_ROWS = 1000


@dataclass
class ValidationSummary:
    """What summary.json holds. No paths or timings: the same training set, suite and
    parameters give the same file (train caches on the content of this output)."""

    passed: bool
    suite: str
    suite_sha256: str
    training_set_sha256: str
    as_of: str
    rows: int
    evaluated: int
    failures: list[Failure]


def run(
    training_set: str,
    validation: str,
    suite: str,
    as_of: str = "",
    max_unseen_category_fraction: float = 0.01,
) -> ValidationSummary:
    """Validate `<training_set>/training_set.parquet` with the suite; write the outputs into
    the `validation` directory; raise GateFailed if any expectation failed."""
    from portside.components.validate.report import render_report
    from portside.components.validate.statistics import column_statistics
    from portside.components.validate.suite import build_expectations, run_suite

    reference_time = parse_as_of(as_of)
    if not 0.0 <= max_unseen_category_fraction <= 1.0:
        raise ConfigurationError(
            f"max_unseen_category_fraction must be in [0, 1], got {max_unseen_category_fraction}"
        )
    suite_file = load_suite(Path(suite))
    expectations = build_expectations(suite_file)  # a bad suite fails before the data is read
    data_path = Path(training_set) / TRAINING_SET_FILE
    values, schema = _frames(read_training_table(data_path))
    parameters = {
        **suite_file.config.get("suite_parameters", {}),  # the suite's own defaults
        "as_of": reference_time.isoformat(),
        "max_unseen_category_fraction": max_unseen_category_fraction,
    }
    result = run_suite(suite_file, expectations, values, schema, parameters)
    failed = failures(result)
    summary = ValidationSummary(
        passed=not failed,
        suite=suite_file.name,
        suite_sha256=suite_file.sha256,
        training_set_sha256=content_hash(data_path),
        as_of=parameters["as_of"],
        rows=len(values),
        evaluated=len(result["results"]),
        failures=failed,
    )
    statistics = column_statistics(values, suite_file.roles)
    # Which feature service definition the baseline describes: a monitor refuses to compare
    # windows of another version against it.
    statistics["feature_service"] = _feature_service(Path(training_set))
    out_dir = Path(validation)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_json(out_dir / VALIDATION_RESULT_FILE, result)
    _write_json(out_dir / STATISTICS_FILE, statistics)
    (out_dir / VALIDATION_REPORT_FILE).write_text(render_report(result, _report_header(summary)))
    _write_json(out_dir / VALIDATION_SUMMARY_FILE, asdict(summary))
    if summary.failures:
        raise GateFailed(_gate_message(summary, out_dir))
    return summary


def _feature_service(training_set: Path) -> dict[str, str | None] | None:
    """Name and definition hash from the features component's manifest, when there is one."""
    path = training_set / MANIFEST_FILE
    if not path.is_file():
        return None
    manifest = read_json_object(path, "features")
    return {"name": manifest.get("feature_service"), "hash": manifest.get("feature_service_hash")}


def parse_as_of(text: str) -> datetime:
    """The reference time for freshness: an ISO date/time (naive means UTC); empty: now."""
    if not text.strip():
        return datetime.now(timezone.utc)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError as error:
        raise ConfigurationError(f"as_of: not an ISO date/time: {text!r}") from error
    return value if value.tzinfo is not None else value.replace(tzinfo=timezone.utc)


def read_training_set(path: Path) -> pd.DataFrame:
    """The training set with pandas' nullable dtypes: an integer column with missing values
    stays an integer column, and writing the frame back keeps the stored types."""
    return nullable_frame(read_training_table(path))


def nullable_frame(table: pa.Table) -> pd.DataFrame:
    import pandas as pd
    import pyarrow as pa

    nullable = {
        pa.int64(): pd.Int64Dtype(),
        pa.float64(): pd.Float64Dtype(),
        pa.bool_(): pd.BooleanDtype(),
        pa.string(): pd.StringDtype("pyarrow"),
        pa.large_string(): pd.StringDtype("pyarrow"),
    }
    return table.to_pandas(types_mapper=nullable.get)


def _frames(table: pa.Table) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(values, schema): all rows with numpy dtypes (nulls in integer columns become NaN) for
    the value rules and the statistics; the first rows with nullable dtypes for the type rules
    (rows, not just the schema, so an object column's values can be type-checked)."""
    import pandas as pd
    import pyarrow as pa

    schema = nullable_frame(table.slice(0, SCHEMA_ROWS))
    strings = {pa.string(): pd.StringDtype("pyarrow"), pa.large_string(): pd.StringDtype("pyarrow")}
    # Arrow-backed strings: a fraction of the memory of Python str objects.
    values = table.to_pandas(types_mapper=strings.get, self_destruct=True)
    return values, schema


def _gate_message(summary: ValidationSummary, out_dir: Path) -> str:
    first = summary.failures[0].message
    return f"{first} ({len(summary.failures)} failed; see {out_dir / VALIDATION_REPORT_FILE})"


def _report_header(summary: ValidationSummary) -> dict[str, Any]:
    return {
        "rows": summary.rows,
        "as of": summary.as_of,
        "suite": summary.suite,
        "suite sha256": summary.suite_sha256,
        "training set sha256": summary.training_set_sha256,
    }


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")
