"""The one time-based split every component uses: train on the past, judge on the future.

Rows are cut by event time, never at random, so no later information reaches training and the
test window is strictly after the training window. train computes the boundaries from its
fractions and writes them (`split.json` in the model directory); evaluate cuts the same
training set at those boundaries, so the two cannot disagree on which rows are held out.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.common.artifacts import SPLIT_FILE, read_record
from portside.components.errors import InputDataError

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


@dataclass(frozen=True)
class SplitBoundaries:
    """Where train cut the training set; ISO timestamps at full (nanosecond) precision."""

    timestamp_column: str
    validation_start: str
    test_start: str
    validation_fraction: float
    test_fraction: float
    rows: dict[str, int]  # per part, so a consumer can tell it cut the same training set

    def save(self, model_dir: str | Path) -> None:
        (Path(model_dir) / SPLIT_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, model_dir: str | Path) -> SplitBoundaries:
        return read_record(cls, Path(model_dir) / SPLIT_FILE, "train")

    def cut(self, frame: pd.DataFrame) -> TimeSplit:
        import pandas as pd

        return _cut(
            frame,
            self.timestamp_column,
            pd.Timestamp(self.validation_start),
            pd.Timestamp(self.test_start),
        )


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
    return _cut(frame, timestamp_column, validation_start, test_start)


def boundaries(
    split: TimeSplit, timestamp_column: str, validation_fraction: float, test_fraction: float
) -> SplitBoundaries:
    """What to record of a split so that `SplitBoundaries.cut` reproduces it."""
    return SplitBoundaries(
        timestamp_column=timestamp_column,
        validation_start=split.validation_start.isoformat(),
        test_start=split.test_start.isoformat(),
        validation_fraction=validation_fraction,
        test_fraction=test_fraction,
        rows={name: len(getattr(split, name)) for name in ("train", "validation", "test")},
    )


def _cut(
    frame: pd.DataFrame,
    timestamp_column: str,
    validation_start: pd.Timestamp,
    test_start: pd.Timestamp,
) -> TimeSplit:
    if timestamp_column not in frame.columns:
        raise InputDataError(f"column {timestamp_column!r} is missing; it orders the split")
    times = frame[timestamp_column]
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
