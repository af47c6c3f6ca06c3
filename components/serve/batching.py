"""Concurrent requests scored together: one online-store read and one model call for all of
them.

The fixed cost of a lookup (the on-demand view's pandas round trip, the signature call) is
several milliseconds whatever the number of rows, so under load the server merges the
requests that arrived while the previous batch ran into one. Nothing waits for a batch to
fill: an idle server scores a lone request at once, so batching costs no latency at low load.
A batch holds requests for one champion version (a swap starts a new batch), and a request
with bad input fails alone: the batch is then scored request by request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

Scored = tuple["np.ndarray", "pa.Table"]
# (model, rows) -> (scores, feature table), blocking; raises for the whole call
ScoreFunction = Callable[[Any, list[dict[str, Any]]], Scored]


@dataclass
class _Pending:
    model: Any
    rows: list[dict[str, Any]]
    future: asyncio.Future


class Batcher:
    """Scores requests in batches of at most `max_rows` rows, `max_batches` at a time."""

    def __init__(
        self,
        score: ScoreFunction,
        max_rows: int,
        max_batches: int = 1,
        individual_errors: tuple[type[Exception], ...] = (),
    ) -> None:
        self.score_rows = score
        self.max_rows = max_rows
        self.max_batches = max_batches
        # errors that belong to one request's input: the batch is retried request by request
        self.individual_errors = individual_errors
        self.batches = 0  # how many batches scored how many requests (exported as metrics)
        self.requests = 0
        self._pending: list[_Pending] = []
        self._running = 0

    @property
    def pending_rows(self) -> int:
        """Rows waiting for a batch (not the ones being scored)."""
        return sum(len(pending.rows) for pending in self._pending)

    async def score(self, model: Any, rows: list[dict[str, Any]]) -> Scored:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(model, rows, future))
        if self._running < self.max_batches:
            self._running += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._take()
                outcomes = await run_in_threadpool(self._score_batch, batch)
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.future.done():  # the client went away
                        continue
                    if isinstance(outcome, BaseException):
                        pending.future.set_exception(outcome)
                    else:
                        pending.future.set_result(outcome)
        finally:
            self._running -= 1

    def _take(self) -> list[_Pending]:
        """The oldest pending requests of one model, up to max_rows rows (at least one)."""
        first = self._pending[0]
        batch, rows, rest = [], 0, []
        for pending in self._pending:
            fits = not batch or rows + len(pending.rows) <= self.max_rows
            if pending.model is first.model and fits and not pending.future.done():
                batch.append(pending)
                rows += len(pending.rows)
            elif not pending.future.done():
                rest.append(pending)
        self._pending = rest
        return batch

    def _score_batch(self, batch: list[_Pending]) -> list[Scored | BaseException]:
        self.batches += 1
        self.requests += len(batch)
        if len(batch) == 1:
            return [self._score_one(batch[0])]
        rows = [row for pending in batch for row in pending.rows]
        try:
            scores, table = self.score_rows(batch[0].model, rows)
        except self.individual_errors:
            return [self._score_one(pending) for pending in batch]
        except Exception as error:  # noqa: BLE001  (the store is down: every request says so)
            return [error] * len(batch)
        outcomes: list[Scored | BaseException] = []
        start = 0
        for pending in batch:
            size = len(pending.rows)
            outcomes.append((scores[start : start + size], table.slice(start, size)))
            start += size
        return outcomes

    def _score_one(self, pending: _Pending) -> Scored | BaseException:
        try:
            return self.score_rows(pending.model, pending.rows)
        except Exception as error:  # noqa: BLE001  (handed to the request's handler)
            return error
