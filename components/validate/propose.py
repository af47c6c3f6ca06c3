"""Propose the data-derived part of an expectation suite from reference training sets.

What GX's data assistants did before GX 1.x removed them: profile known-good data and write
expectations that a person reviews (`git diff`) and commits next to the feature definitions.
For every numeric feature (a number that is not a key, the label or the timestamp, as the
suite's `meta.roles` says):

  expect_column_max_to_be_between              max <= top + (max_headroom - 1) * (top - bottom)
  expect_column_quantile_values_to_be_between  each quantile within its band
  expect_column_mean_to_be_between             the mean within its band

top and bottom are the largest and smallest values over all references. A band runs from
`low / tolerance - slack` to `high * tolerance + slack`, where low and high are the smallest and
largest value of that statistic over the references, and slack is `slack` times the widest
1%-99% quantile range (it keeps a band around zero from collapsing). A band stops at zero for a
column that never crossed it; bounds are rounded outward (3 significant digits, integer columns
to integers). Several references (seeds, sizes, configurations the project runs) widen the
bands to cover all of them: the GX data assistants' multi-batch estimate.

The upper bound catches unit errors (x1000); the bands catch a scale change the bound lets
through (x10). Expectations a person wrote (no `meta.proposed_by`) are kept as they are and
first; the previously proposed ones are replaced. Deterministic: same suite, references and
settings, same file.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.common.artifacts import TRAINING_SET_FILE, read_training_table
from portside.components.errors import ConfigurationError, InputDataError
from portside.components.validate.suite import SuiteFile, load_suite

if TYPE_CHECKING:
    import pandas as pd

    from portside.components.validate.suite import Roles

PROPOSED_BY = "portside expectations propose"
SPREAD = (0.01, 0.99)  # the quantile range that scales the slack
WIDTH = 100  # the suite file's line width


@dataclass(frozen=True)
class ProposalSettings:
    quantiles: tuple[float, ...] = (0.05, 0.25, 0.5, 0.75, 0.95)
    tolerance: float = 2.0  # band factor around the reference statistic
    slack: float = 0.02  # fraction of the 1%-99% range added on both sides of a band
    max_headroom: float = 10.0  # the upper bound, in reference ranges above the bottom
    digits: int = 3  # significant digits of a rounded bound

    def check(self) -> None:
        """Raise ConfigurationError naming the offending setting."""
        if not self.quantiles or any(not 0.0 <= q <= 1.0 for q in self.quantiles):
            raise ConfigurationError(f"quantiles must be in [0, 1], got {list(self.quantiles)}")
        if list(self.quantiles) != sorted(set(self.quantiles)):
            raise ConfigurationError(f"quantiles must be increasing, got {list(self.quantiles)}")
        for name, least in (("tolerance", 1.0), ("slack", 0.0), ("max_headroom", 1.0)):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= least):
                raise ConfigurationError(f"{name} must be a number >= {least:g}, got {value}")
        if self.digits < 1:
            raise ConfigurationError(f"digits must be >= 1, got {self.digits}")


@dataclass(frozen=True)
class ColumnProfile:
    """One numeric column of one reference training set (nulls left out)."""

    integer: bool
    minimum: float
    maximum: float
    mean: float
    quantiles: tuple[float, ...]
    spread: float  # SPREAD quantile range


@dataclass(frozen=True)
class Reference:
    path: Path
    rows: int
    fingerprint: str
    columns: dict[str, ColumnProfile]


@dataclass(frozen=True)
class Proposal:
    suite: dict[str, Any]  # the suite file's JSON
    kept: int  # hand-written expectations kept
    proposed: int
    columns: list[str]  # the numeric features the proposal covers


def propose(
    suite: Path, training_sets: Sequence[Path], settings: ProposalSettings = ProposalSettings()
) -> Proposal:
    """The suite at `suite` with its proposed expectations derived anew from the training
    set directories (each holding training_set.parquet); nothing is written."""
    from portside.components.validate.suite import build_expectations

    settings.check()
    if not training_sets:
        raise ConfigurationError("at least one reference training set is required")
    current = load_suite(suite)
    references = [
        profile(Path(d) / TRAINING_SET_FILE, current.roles, settings) for d in training_sets
    ]
    columns = _common_columns(references)
    kept = [e for e in current.config["expectations"] if not is_proposed(e)]
    proposed = [
        expectation
        for name in columns
        for expectation in column_expectations(
            name, [r.columns[name] for r in references], settings
        )
    ]
    meta = {**(current.config.get("meta") or {}), "proposal": _provenance(references, settings)}
    config = {**current.config, "meta": meta, "expectations": kept + proposed}
    # GX must load what a person will commit; a bad proposal fails here, not in a pipeline.
    build_expectations(SuiteFile(suite, current.name, "", config, current.roles))
    return Proposal(config, len(kept), len(proposed), columns)


def is_proposed(entry: Any) -> bool:
    return isinstance(entry, dict) and (entry.get("meta") or {}).get("proposed_by") == PROPOSED_BY


def profile(path: Path, roles: Roles, settings: ProposalSettings) -> Reference:
    """Statistics of every numeric feature of one reference training set."""
    from portside.components.features.run import content_fingerprint
    from portside.components.validate.run import nullable_frame
    from portside.components.validate.statistics import numeric_columns

    table = read_training_table(path)
    frame = nullable_frame(table)
    columns = {
        name: _column_profile(path, name, frame[name], settings)
        for name in numeric_columns(frame, roles)
    }
    return Reference(path, len(frame), content_fingerprint(table), columns)


def _column_profile(
    path: Path, name: str, series: pd.Series, settings: ProposalSettings
) -> ColumnProfile:
    import numpy as np
    import pandas as pd

    values = series.to_numpy(dtype="float64", na_value=np.nan)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        raise InputDataError(f"{path}: column {name!r} has no values to derive bounds from")
    # "nearest": what GX's pandas quantile metric computes, so bands bracket observed values.
    quantiles = np.quantile(values, settings.quantiles, method="nearest")
    low, high = np.quantile(values, SPREAD, method="nearest")
    return ColumnProfile(
        integer=pd.api.types.is_integer_dtype(series),
        minimum=float(values.min()),
        maximum=float(values.max()),
        mean=float(values.mean()),
        quantiles=tuple(float(q) for q in quantiles),
        spread=float(high - low),
    )


def _common_columns(references: list[Reference]) -> list[str]:
    first = references[0]
    for other in references[1:]:
        missing = [c for c in first.columns if c not in other.columns]
        extra = [c for c in other.columns if c not in first.columns]
        if missing or extra:
            raise InputDataError(
                f"{other.path}: numeric features differ from {first.path}: "
                f"missing {missing}, unexpected {extra}"
            )
    return list(first.columns)


@dataclass(frozen=True)
class _Band:
    """How one column's bounds are drawn (see the module docstring)."""

    tolerance: float
    slack: float
    floor: float | None  # a band never goes below it (0 for a column never negative)
    ceiling: float | None
    digits: int

    def around(self, values: list[float], integer: bool) -> list[float | int]:
        low, high = min(values), max(values)
        low = (low / self.tolerance if low >= 0 else low * self.tolerance) - self.slack
        high = (high * self.tolerance if high >= 0 else high / self.tolerance) + self.slack
        if self.floor is not None:
            low = max(low, self.floor)
        if self.ceiling is not None:
            high = min(high, self.ceiling)
        return [self.round(low, up=False, integer=integer), self.round(high, True, integer)]

    def round(self, value: float, up: bool, integer: bool) -> float | int:
        """Outward: a rounded bound never excludes what the exact one allows."""
        if integer:
            return int(math.ceil(value) if up else math.floor(value))
        if value == 0:
            return 0.0
        exponent = math.floor(math.log10(abs(value))) - self.digits + 1
        step = Decimal(1).scaleb(exponent)
        rounded = Decimal(repr(value)).quantize(step, ROUND_CEILING if up else ROUND_FLOOR)
        return float(rounded)


def column_expectations(
    name: str, profiles: list[ColumnProfile], settings: ProposalSettings
) -> list[dict[str, Any]]:
    """The proposed expectations of one numeric feature, from its profile in each reference."""
    integer = all(p.integer for p in profiles)
    bottom = min(p.minimum for p in profiles)
    top = max(p.maximum for p in profiles)
    band = _Band(
        tolerance=settings.tolerance,
        slack=settings.slack * max(p.spread for p in profiles),
        floor=0.0 if bottom >= 0 else None,
        ceiling=0.0 if top <= 0 else None,
        digits=settings.digits,
    )
    upper = band.round(top + (settings.max_headroom - 1) * (top - bottom), True, integer)
    ranges = [
        band.around([p.quantiles[i] for p in profiles], integer)
        for i in range(len(settings.quantiles))
    ]
    mean = band.around([p.mean for p in profiles], integer=False)
    meta = {"proposed_by": PROPOSED_BY}
    quantile_ranges = {"quantiles": list(settings.quantiles), "value_ranges": ranges}
    return [
        {
            "type": "expect_column_max_to_be_between",
            "kwargs": {"column": name, "max_value": upper},
            "meta": meta,
        },
        {
            "type": "expect_column_quantile_values_to_be_between",
            "kwargs": {"column": name, "quantile_ranges": quantile_ranges},
            "meta": meta,
        },
        {
            "type": "expect_column_mean_to_be_between",
            "kwargs": {"column": name, "min_value": mean[0], "max_value": mean[1]},
            "meta": meta,
        },
    ]


def _provenance(references: list[Reference], settings: ProposalSettings) -> dict[str, Any]:
    """What a reviewer needs to reproduce the proposal: no paths or times, so the same
    references and settings give the same file anywhere."""
    return {
        "by": PROPOSED_BY,
        "settings": {**asdict(settings), "quantiles": list(settings.quantiles)},
        "references": [{"rows": r.rows, "fingerprint": r.fingerprint} for r in references],
    }


def format_suite(suite: dict[str, Any]) -> str:
    """The suite as JSON for review: a value on one line while it fits WIDTH, lists of plain
    values filled line by line."""
    return _dump(suite, 0) + "\n"


def _dump(value: Any, indent: int) -> str:
    flat = json.dumps(value, ensure_ascii=False)
    if indent + len(flat) <= WIDTH or not isinstance(value, (dict, list)) or not value:
        return flat
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict):
        items = [f"{inner}{json.dumps(k)}: {_dump(v, indent + 2)}" for k, v in value.items()]
    elif all(not isinstance(v, (dict, list)) for v in value):
        items = _fill([json.dumps(v, ensure_ascii=False) for v in value], inner)
    else:
        items = [inner + _dump(v, indent + 2) for v in value]
    brackets = "{}" if isinstance(value, dict) else "[]"
    return brackets[0] + "\n" + ",\n".join(items) + "\n" + pad + brackets[1]


def _fill(words: list[str], indent: str) -> list[str]:
    lines: list[str] = []
    for word in words:
        if lines and len(lines[-1]) + len(word) + 3 <= WIDTH:
            lines[-1] += ", " + word
        else:
            lines.append(indent + word)
    return lines
