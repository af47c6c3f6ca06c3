"""One line per failed expectation, naming the column and the rule, from a GX result (JSON).

e.g. "column 'amount': 37 of 20000 values outside (0, 50000], e.g. -5, 1e+07
(expect_column_values_to_be_between)" on a single line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

EXAMPLES = 3

Result = dict[str, Any]


@dataclass(frozen=True)
class Failure:
    column: str | None  # None: the rule is about the whole table
    rule: str  # the GX expectation type
    message: str


def failures(result: Result) -> list[Failure]:
    """Failed expectations of a suite result, in the result's order."""
    columns = table_columns(result)
    return [describe(r, columns) for r in result["results"] if not r["success"]]


def describe(outcome: Result, columns: set[str] | None = None) -> Failure:
    """`columns`: the columns the data has, if known; a rule on a missing column then says
    so instead of repeating GX's internal error."""
    config = outcome["expectation_config"]
    rule, kwargs = config["type"], config["kwargs"]
    column = kwargs.get("column")
    subject = f"column {column!r}" if column is not None else "table"
    error = _exception_message(outcome)
    if column is not None and columns is not None and column not in columns:
        detail = "column is missing"
    elif error is not None:
        detail = f"could not be evaluated: {error}"
    else:
        detail = _DETAILS.get(rule, _aggregate)(rule, kwargs, outcome["result"])
    return Failure(column, rule, " ".join(f"{subject}: {detail} ({rule})".split()))


def table_columns(result: Result) -> set[str] | None:
    """The data's columns, as observed by the suite's column-set rule (if it has one)."""
    for outcome in result["results"]:
        if outcome["expectation_config"]["type"].startswith("expect_table_columns_to_match"):
            observed = outcome["result"].get("observed_value")
            if isinstance(observed, list):
                return set(observed)
    return None


def _exception_message(outcome: Result) -> str | None:
    """GX keeps an expectation's exceptions per metric; the first message says enough."""
    info = outcome.get("exception_info") or {}
    if info.get("raised_exception"):
        return info.get("exception_message") or "error"
    for value in info.values():
        if isinstance(value, dict) and value.get("raised_exception"):
            return value.get("exception_message") or "error"
    return None


def _columns(rule: str, kwargs: dict, result: Result) -> str:
    mismatch = (result.get("details") or {}).get("mismatched") or {}
    parts = [
        f"{key} {', '.join(repr(c) for c in mismatch[key])}"
        for key in ("missing", "unexpected")
        if mismatch.get(key)
    ]
    return "columns differ from the suite: " + ("; ".join(parts) or "order or set changed")


def _row_count(rule: str, kwargs: dict, result: Result) -> str:
    return f"{result.get('observed_value')} rows, expected {_range(kwargs)}"


def _type(rule: str, kwargs: dict, result: Result) -> str:
    return f"type {result.get('observed_value')}, expected {kwargs.get('type_')}"


def _nulls(rule: str, kwargs: dict, result: Result) -> str:
    return f"{_count(result)} values null ({_percent(result)}), {_tolerance(kwargs)}"


def _between(rule: str, kwargs: dict, result: Result) -> str:
    return f"{_count(result)} values outside {_range(kwargs)}{_examples(result)}"


def _in_set(rule: str, kwargs: dict, result: Result) -> str:
    share, limit = _percent(result), _tolerance(kwargs)
    return f"{_count(result)} values ({share}) not in the allowed set{_examples(result)}; {limit}"


def _tolerance(kwargs: dict) -> str:
    """What share of unexpected values the rule's `mostly` allows."""
    allowed = (1 - kwargs.get("mostly", 1.0)) * 100
    return f"at most {allowed:.3g}% allowed" if allowed > 0 else "none allowed"


def _unique(rule: str, kwargs: dict, result: Result) -> str:
    return f"{_count(result)} values duplicated{_examples(result)}"


def _quantiles(rule: str, kwargs: dict, result: Result) -> str:
    """Each quantile outside its range, e.g. "quantile 0.5 466 outside [0, 119]"."""
    observed = result.get("observed_value") or {}
    ranges = (kwargs.get("quantile_ranges") or {}).get("value_ranges") or []
    passed = (result.get("details") or {}).get("success_details") or []
    outside = [
        f"quantile {q:g} {_value(value, quote=False)} outside {_range(_bounds(bounds))}"
        for q, value, bounds, ok in zip(
            observed.get("quantiles", []), observed.get("values", []), ranges, passed, strict=False
        )
        if not ok
    ]
    return "; ".join(outside) or f"failed, observed {_value(observed, quote=False)}"


def _bounds(pair: list) -> dict:
    return {"min_value": pair[0], "max_value": pair[1]}


def _aggregate(rule: str, kwargs: dict, result: Result) -> str:
    """expect_column_<statistic>_to_be_between and anything without a dedicated line."""
    match = re.fullmatch(r"expect_column_(\w+?)_to_be_between", rule)
    observed = _value(result.get("observed_value"), quote=False)
    if match and ("min_value" in kwargs or "max_value" in kwargs):
        if observed in ("None", "NaT", "nan"):  # GX's answer for a column without values
            return f"{match.group(1)} undefined (no values), expected {_range(kwargs)}"
        return f"{match.group(1)} {observed} outside {_range(kwargs)}"
    return f"failed, observed {observed}"


_DETAILS: dict[str, Callable[[str, dict, Result], str]] = {
    "expect_table_columns_to_match_set": _columns,
    "expect_table_columns_to_match_ordered_list": _columns,
    "expect_table_row_count_to_be_between": _row_count,
    "expect_column_values_to_be_of_type": _type,
    "expect_column_values_to_not_be_null": _nulls,
    "expect_column_values_to_be_between": _between,
    "expect_column_values_to_be_in_set": _in_set,
    "expect_column_values_to_be_unique": _unique,
    "expect_column_quantile_values_to_be_between": _quantiles,
}


def _count(result: Result) -> str:
    return f"{result.get('unexpected_count')} of {result.get('element_count')}"


def _percent(result: Result) -> str:
    return f"{result.get('unexpected_percent') or 0.0:.3g}%"


def _examples(result: Result) -> str:
    seen: list[Any] = []
    for value in result.get("partial_unexpected_list") or []:
        if value not in seen:
            seen.append(value)
    if not seen:
        return ""
    return ", e.g. " + ", ".join(_value(v) for v in seen[:EXAMPLES])


def _range(kwargs: dict) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    left = "(" if low is None or kwargs.get("strict_min") else "["
    right = ")" if high is None or kwargs.get("strict_max") else "]"
    low_text = "-inf" if low is None else _value(low, quote=False)
    high_text = "inf" if high is None else _value(high, quote=False)
    return f"{left}{low_text}, {high_text}{right}"


def _value(value: Any, quote: bool = True) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value) if len(str(value)) <= 40 else str(value)[:37] + "..."
    return repr(text) if quote and isinstance(value, str) else text
