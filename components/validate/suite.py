"""Expectation suites: Great Expectations' own ExpectationSuite JSON, loaded strictly.

A suite file is what `ExpectationSuite.to_json_dict()` writes: a name, optional notes and meta,
and a list of expectations, each a GX expectation type with its kwargs. Runtime values (the
freshness reference time, the unseen-category tolerance) are GX suite parameters
(`{"$PARAMETER": "as_of - timedelta(days=3)"}`), supplied when the suite runs.

Besides GX, the suite's `meta.roles` names the key, label and timestamp columns, which the
column statistics treat specially.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.errors import ConfigurationError

if TYPE_CHECKING:
    import pandas as pd

SUITE_KEYS = {"name", "expectations", "meta", "notes", "suite_parameters", "id"}
# Rules about a column's stored type; they run on the schema frame (see run_suite).
SCHEMA_RULES = {"expect_column_values_to_be_of_type", "expect_column_values_to_be_in_type_list"}
SCHEMA, TABLE = ("schema",), ("table",)


@dataclass(frozen=True)
class Roles:
    """Columns with a meaning beyond their values."""

    keys: tuple[str, ...] = ()
    label: str | None = None
    timestamp: str | None = None


@dataclass(frozen=True)
class SuiteFile:
    path: Path
    name: str
    sha256: str
    config: dict[str, Any]
    roles: Roles


def load_suite(path: Path) -> SuiteFile:
    """Read and check a suite file's structure (no GX import: fails fast and cheap)."""
    if not path.is_file():
        raise ConfigurationError(f"{path}: expectation suite not found")
    text = path.read_text()
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigurationError(f"{path}: not valid JSON ({error})") from error
    if not isinstance(config, dict) or not isinstance(config.get("expectations"), list):
        raise ConfigurationError(f"{path}: expected an object with an 'expectations' list")
    if not config.get("name"):
        raise ConfigurationError(f"{path}: the suite has no 'name'")
    unknown = set(config) - SUITE_KEYS
    if unknown:
        raise ConfigurationError(f"{path}: unknown key(s) {sorted(unknown)}")
    if not isinstance(config.get("suite_parameters", {}), dict):
        raise ConfigurationError(f"{path}: 'suite_parameters' must be an object")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return SuiteFile(path, config["name"], digest, config, _roles(path, config))


def _roles(path: Path, config: dict[str, Any]) -> Roles:
    raw = (config.get("meta") or {}).get("roles", {})
    try:
        roles = Roles(**raw)
    except TypeError as error:
        raise ConfigurationError(f"{path}: meta.roles: {error}") from error
    return Roles(tuple(roles.keys), roles.label, roles.timestamp)


def build_expectations(suite: SuiteFile) -> list[Any]:
    """GX expectation objects. Each is built here so a bad one is an error; ExpectationSuite
    itself only logs an invalid expectation and drops it."""
    from great_expectations.expectations.expectation_configuration import (
        ExpectationConfiguration,
    )

    expectations = []
    for index, entry in enumerate(suite.config["expectations"]):
        kind = entry.get("type", "?") if isinstance(entry, dict) else "?"
        try:
            expectations.append(ExpectationConfiguration(**entry).to_domain_obj())
        except Exception as error:  # GX raises pydantic, TypeError and its own errors here
            message = " ".join(str(error).split())
            raise ConfigurationError(
                f"{suite.path}: expectation {index} ({kind}): {message}"
            ) from error
    return expectations


def run_suite(
    suite: SuiteFile,
    expectations: list[Any],
    values: pd.DataFrame,
    schema: pd.DataFrame,
    parameters: dict[str, Any],
) -> dict[str, Any]:
    """Validate in an ephemeral GX context; one suite result as JSON, in the suite's order.

    Type rules run on `schema` (the first rows with pandas' nullable dtypes, so an integer
    column with nulls is still an integer column, as stored). Every other rule runs on
    `values` (numpy dtypes: GX checks ranges on nullable columns one value at a time in
    Python), and a rule about one column on a batch of just that column: GX copies its whole
    batch to drop the column's nulls several times per rule, so that is 2-3x faster.
    """
    import great_expectations as gx

    context = _context()
    asset = context.data_sources.add_pandas("portside").add_dataframe_asset("training_set")
    batch_definition = asset.add_batch_definition_whole_dataframe("whole")
    outcomes: list[tuple[int, dict[str, Any]]] = []
    batches = _batches(expectations, set(values.columns))
    for number, (batch, chosen) in enumerate(batches.items()):
        frame = schema if batch == SCHEMA else values if batch == TABLE else values[[batch[1]]]
        gx_suite = context.suites.add(
            gx.ExpectationSuite(name=f"{suite.name}.{number}", expectations=[e for _, e in chosen])
        )
        # Adding gave every expectation an id; GX returns results grouped by metric domain.
        indices = [index for index, _ in chosen]
        order = {e.id: i for e, i in zip(gx_suite.expectations, indices, strict=True)}
        # Batch.validate, not a ValidationDefinition: that one also stores the result, and
        # its store cannot serialize the numpy booleans GX's quantile rule reports.
        batch = batch_definition.get_batch(batch_parameters={"dataframe": frame})
        result = batch.validate(gx_suite, expectation_parameters=parameters)
        outcomes += [(order[r.expectation_config.id], r.to_json_dict()) for r in result.results]
    ordered = [outcome for _, outcome in sorted(outcomes, key=lambda o: o[0])]
    return _suite_result(suite, parameters, ordered)


def _batches(
    expectations: list[Any], columns: set[str]
) -> dict[tuple[str, ...], list[tuple[int, Any]]]:
    """(suite position, expectation) by the data they run on: SCHEMA, TABLE or
    ("column", name)."""
    batches: dict[tuple[str, ...], list[tuple[int, Any]]] = {}
    for index, expectation in enumerate(expectations):
        kwargs = expectation.configuration.kwargs
        column = kwargs.get("column")
        if expectation.expectation_type in SCHEMA_RULES:
            batch = SCHEMA
        elif column in columns and not kwargs.get("row_condition"):
            batch = ("column", column)
        else:  # table rules, several columns, a condition on others, or a missing column
            batch = TABLE
        batches.setdefault(batch, []).append((index, expectation))
    return batches


def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    # GX logs routine steps at INFO ("Parsing suite parameter operand as integer failed."),
    # which read like errors in a pipeline's task log.
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    context = gx.get_context(mode="ephemeral")
    # GX draws progress bars on stderr by default; a component's stderr is for its reason.
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return context


def _suite_result(
    suite: SuiteFile, parameters: dict[str, Any], outcomes: list[dict[str, Any]]
) -> dict[str, Any]:
    """A GX suite result (ExpectationSuiteValidationResult JSON) over all batches. Without the
    random ids and run times GX adds: the same data and suite give the same file, so a step
    that caches on the content of this output (train) can hit its cache."""
    import great_expectations as gx

    for outcome in outcomes:
        outcome["expectation_config"].pop("id", None)
    passed = sum(1 for outcome in outcomes if outcome["success"])
    return {
        "success": passed == len(outcomes),
        "suite_name": suite.name,
        "suite_parameters": parameters,
        "statistics": {
            "evaluated_expectations": len(outcomes),
            "successful_expectations": passed,
            "unsuccessful_expectations": len(outcomes) - passed,
            "success_percent": 100.0 * passed / len(outcomes) if outcomes else None,
        },
        "meta": {"great_expectations_version": gx.__version__},
        "results": outcomes,
    }
