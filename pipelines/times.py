"""Times on the command line: ISO input, UTC everywhere."""

from __future__ import annotations

import argparse
from datetime import datetime, timezone


def parse_timestamp(text: str) -> datetime:
    """ISO date or datetime; naive values are UTC (an argparse `type`)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not an ISO date/time: {text!r}") from error
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def today_utc() -> datetime:
    """The start of today, UTC."""
    return datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
