"""The prediction log monitoring reads: one row per scored instance (time, request id, model
version, arm, score and the features the model saw), written to Parquet partitioned by date
(`<folder>/date=YYYY-MM-DD/part-*.parquet`) by a thread of its own.

The request path only appends to a bounded buffer and never waits: when the disk is slower
than the traffic and the buffer is full, new rows are dropped and counted (`dropped`, exported
as a metric), so every answered instance is either logged or counted.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger("portside.serve")
DEFAULT_MAX_PENDING_ROWS = 100_000
DEFAULT_FLUSH_ROWS = 5_000
DEFAULT_FLUSH_INTERVAL_S = 1.0


def write_parquet(folder: Path, rows: list[dict[str, Any]]) -> None:
    """One Parquet file per date among `rows` (written under a temporary name, then renamed,
    so a reader never sees half a file)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    by_date: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_date.setdefault(row["timestamp"].strftime("%Y-%m-%d"), []).append(row)
    for date, part in by_date.items():
        target = folder / f"date={date}"
        target.mkdir(parents=True, exist_ok=True)
        name = f"part-{time.time_ns()}-{uuid.uuid4().hex[:8]}.parquet"
        partial = target / f".{name}.partial"
        pq.write_table(pa.Table.from_pylist(part), partial)
        partial.rename(target / name)


class PredictionLog:
    def __init__(
        self,
        folder: str | Path,
        max_pending_rows: int = DEFAULT_MAX_PENDING_ROWS,
        flush_rows: int = DEFAULT_FLUSH_ROWS,
        flush_interval_s: float = DEFAULT_FLUSH_INTERVAL_S,
        writer: Callable[[Path, list[dict[str, Any]]], None] = write_parquet,
    ) -> None:
        self.folder = Path(folder)
        self.max_pending_rows = max_pending_rows
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._writer = writer
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = False
        self.logged = 0  # rows written
        self.dropped = 0  # rows refused because the buffer was full
        self.failed = 0  # rows lost to a failed write (also in the log)
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)
        self._thread.start()

    def record(
        self,
        version: str,
        arm: str,
        scores: list[float],
        features: list[dict[str, Any]],
        request_id: str | None = None,
    ) -> None:
        """Queue one row per instance; returns at once (drops and counts when full)."""
        now = datetime.now(timezone.utc)
        request_id = request_id or uuid.uuid4().hex
        rows = [
            {
                "timestamp": now,
                "request_id": request_id,
                "instance": i,
                "model_version": version,
                "arm": arm,
                "score": float(score),
                **values,
            }
            for i, (score, values) in enumerate(zip(scores, features, strict=True))
        ]
        with self._lock:
            room = self.max_pending_rows - len(self._pending)
            if len(rows) > room:
                self.dropped += len(rows)
                return
            self._pending.extend(rows)
            if len(self._pending) >= self.flush_rows:
                self._wake.set()

    def close(self, timeout_s: float = 30.0) -> None:
        """Write what is pending and stop the writer thread."""
        self._closing = True
        self._wake.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval_s)
            self._wake.clear()
            with self._lock:
                batch, self._pending = self._pending, []
            if batch:
                try:
                    self._writer(self.folder, batch)
                    self.logged += len(batch)
                except Exception as error:  # noqa: BLE001  (a full disk must not stop serving)
                    self.failed += len(batch)
                    log.error("prediction log: %d rows not written: %s", len(batch), error)
            if self._closing and not self._pending:
                return
