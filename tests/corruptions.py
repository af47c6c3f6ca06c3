"""Corrupted training sets: one function per way a training set goes bad, and what must catch it.

Each corruption takes a training set as `components.validate.run.read_training_set` returns it
(pandas nullable dtypes, so writing it back keeps the stored types) and returns a corrupted
copy. `CORRUPTIONS` names, for each, the column and the rule (GX expectation type) that the
validation failure must name; `column` is None for a rule about the whole table. Deterministic:
rows are picked by position, never at random.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from conftest import NUMERIC_FEATURES

TRAINING_SET_FILE = "training_set.parquet"


@dataclass(frozen=True)
class Corruption:
    apply: Callable[[pd.DataFrame], pd.DataFrame]
    column: str | None
    rule: str
    also: tuple[str, ...] = ()  # further rules that must fail with it


def write_training_set(frame: pd.DataFrame, directory: Path) -> Path:
    """Write `frame` where the validate component reads it; returns the directory."""
    directory.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), directory / TRAINING_SET_FILE)
    return directory


def _rows(frame: pd.DataFrame, fraction: float, offset: int = 0) -> np.ndarray:
    """A mask of every (1/fraction)-th row."""
    step = max(1, round(1 / fraction))
    return (np.arange(len(frame)) + offset) % step == 0


def nulls_in_required_column(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc[_rows(out, 0.02), "amount"] = pd.NA
    return out


def nulls_in_feature_above_bound(frame: pd.DataFrame) -> pd.DataFrame:
    """Half the rows lose their 30-day aggregate: far more than users without history."""
    out = frame.copy()
    out.loc[_rows(out, 0.5), "txn_amount_30d"] = pd.NA
    return out


def out_of_range_amounts(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc[_rows(out, 0.01), "amount"] = -5.0
    out.loc[_rows(out, 0.01, offset=1), "amount"] = 1e7
    return out


def unseen_categories(frame: pd.DataFrame) -> pd.DataFrame:
    """5% of rows in a merchant category the suite does not allow (tolerance is 1%)."""
    out = frame.copy()
    out.loc[_rows(out, 0.05), "merchant_category"] = "crypto_exchange"
    return out


def label_rate_too_high(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out.loc[_rows(out, 0.5), "is_fraud"] = 1
    return out


def no_positive_labels(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["is_fraud"] = pd.array(np.zeros(len(out), dtype="int64"), dtype="Int64")
    return out


def dropped_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.drop(columns=["country"])


def renamed_column(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"amount": "transaction_amount"})


def retyped_column(frame: pd.DataFrame) -> pd.DataFrame:
    """Account age stored as float instead of integer days."""
    out = frame.copy()
    out["account_age_days"] = out["account_age_days"].astype("Float64")
    return out


def empty_input(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.iloc[0:0].copy()


def stale_timestamps(frame: pd.DataFrame) -> pd.DataFrame:
    """The same rows a month earlier: a training set built from a stalled feed."""
    out = frame.copy()
    out["event_timestamp"] = out["event_timestamp"] - pd.Timedelta(days=30)
    return out


def duplicated_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([frame, frame[_rows(frame, 0.01)]], ignore_index=True)


def scaled(column: str, factor: int, shift: int = 0) -> Callable[[pd.DataFrame], pd.DataFrame]:
    """Every value of `column` times `factor` plus `shift` (a unit or encoding change upstream);
    integer columns stay integer for integer factors and shifts."""

    def apply(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame.copy()
        out[column] = out[column] * factor + shift
        return out

    return apply


# x1000 and shifted: past the upper bound. x10: maybe inside a loose bound, but off the
# distribution. Scaling one column may fail several of its rules; `rule` and `also` must be
# among them, and no other column may fail.
SCALINGS: dict[str, Corruption] = {
    **{
        f"{c}_x1000_shifted": Corruption(
            scaled(c, 1000, 1000), c, "expect_column_max_to_be_between"
        )
        for c in NUMERIC_FEATURES
    },
    **{
        f"{c}_x10": Corruption(
            scaled(c, 10),
            c,
            "expect_column_quantile_values_to_be_between",
            also=("expect_column_mean_to_be_between",),
        )
        for c in NUMERIC_FEATURES
    },
}

CORRUPTIONS: dict[str, Corruption] = {
    "nulls_in_required_column": Corruption(
        nulls_in_required_column, "amount", "expect_column_values_to_not_be_null"
    ),
    "nulls_in_feature_above_bound": Corruption(
        nulls_in_feature_above_bound, "txn_amount_30d", "expect_column_values_to_not_be_null"
    ),
    "out_of_range_amounts": Corruption(
        out_of_range_amounts, "amount", "expect_column_values_to_be_between"
    ),
    "unseen_categories": Corruption(
        unseen_categories, "merchant_category", "expect_column_values_to_be_in_set"
    ),
    "label_rate_too_high": Corruption(
        label_rate_too_high, "is_fraud", "expect_column_mean_to_be_between"
    ),
    "no_positive_labels": Corruption(
        no_positive_labels, "is_fraud", "expect_column_mean_to_be_between"
    ),
    "dropped_column": Corruption(dropped_column, "country", "expect_table_columns_to_match_set"),
    "renamed_column": Corruption(renamed_column, "amount", "expect_table_columns_to_match_set"),
    "retyped_column": Corruption(
        retyped_column, "account_age_days", "expect_column_values_to_be_of_type"
    ),
    "empty_input": Corruption(empty_input, None, "expect_table_row_count_to_be_between"),
    "stale_timestamps": Corruption(
        stale_timestamps, "event_timestamp", "expect_column_max_to_be_between"
    ),
    "duplicated_rows": Corruption(
        duplicated_rows, "transaction_id", "expect_column_values_to_be_unique"
    ),
}
