"""The champion of an MLflow registry read straight from its SQLite file.

Cache revalidation needs it in milliseconds, without importing MLflow. Other tracking stores
cannot be read this way; the callers then do not reuse cached results.
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from portside.components.common.tracking import resolve_tracking_uri

UNKNOWN = "unknown"


def champion_version(tracking_uri: str, model_name: str) -> str | None:
    """The champion's version, None when there is none, UNKNOWN when it cannot be read."""
    uri = resolve_tracking_uri(tracking_uri)
    if not uri.startswith("sqlite:///"):
        return UNKNOWN
    database = Path(uri.removeprefix("sqlite:///"))
    if not database.is_file():
        return None
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
            row = db.execute(
                "SELECT version FROM registered_model_aliases WHERE name = ? AND alias = ?",
                (model_name, "champion"),
            ).fetchone()
    except sqlite3.Error:
        return UNKNOWN
    return None if row is None else str(row[0])
