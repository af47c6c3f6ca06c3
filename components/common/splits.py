"""The one time-based split every component uses: train on the past, judge on the future.

Rows are cut by event time, never at random, so no later information reaches training and the
test window is strictly after the training window. train and evaluate call the same function
with the same fractions, so they agree on which rows are held out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.errors import InputDataError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    validation: pd.DataFrame
    test: pd.DataFrame
    # first event time of the validation and of the test window
    validation_start: pd.Timestamp
    test_start: pd.Timestamp


def time_split(
    frame: pd.DataFrame,
    timestamp_column: str = "event_timestamp",
    validation_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> TimeSplit:
    """Split by event-time quantiles: earliest rows train, then validation, latest rows test.

    Rows sharing a timestamp stay in the same part, so the parts never overlap in time.
    """
    if timestamp_column not in frame.columns:
        raise InputDataError(f"column {timestamp_column!r} is missing; it orders the split")
    if not (0 < validation_fraction < 1 and 0 < test_fraction < 1):
        raise ValueError("validation_fraction and test_fraction must be between 0 and 1")
    if validation_fraction + test_fraction >= 1:
        raise ValueError("validation_fraction + test_fraction must leave rows to train on")
    times = frame[timestamp_column]
    validation_start = times.quantile(1 - validation_fraction - test_fraction)
    test_start = times.quantile(1 - test_fraction)
    train = frame[times < validation_start]
    validation = frame[(times >= validation_start) & (times < test_start)]
    test = frame[times >= test_start]
    for name, part in (("train", train), ("validation", validation), ("test", test)):
        if part.empty:
            raise InputDataError(
                f"the {name} window is empty ({len(frame)} rows between {times.min()} and "
                f"{times.max()}); more rows or a longer time range are needed"
            )
    return TimeSplit(train, validation, test, validation_start, test_start)
