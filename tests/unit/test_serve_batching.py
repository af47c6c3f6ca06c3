"""The server's batching of concurrent requests (components.serve.batching), with a scoring
function that records its calls: merged calls, per-request results, errors kept apart."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pyarrow as pa
import pytest

from portside.components.serve.batching import Batcher


class BadRow(Exception):
    pass


class Recorder:
    """Scores a row as its `x` times the model's factor; x < 0 is bad input."""

    def __init__(self, delay_s: float = 0.05) -> None:
        self.calls: list[tuple[object, int]] = []
        self.delay_s = delay_s
        self.release = threading.Event()

    def __call__(self, model, rows):
        self.calls.append((model, len(rows)))
        threading.Event().wait(self.delay_s)  # long enough for others to queue up
        if any(row["x"] < 0 for row in rows):
            raise BadRow(f"x < 0 in {len(rows)} row(s)")
        xs = [row["x"] for row in rows]
        return np.array(xs, dtype=float) * model["factor"], pa.table({"x": xs})


def _requests(*sizes: int, start: int = 0) -> list[list[dict]]:
    out, x = [], start
    for size in sizes:
        out.append([{"x": x + i} for i in range(size)])
        x += size
    return out


async def _score_all(batcher: Batcher, model, requests) -> list:
    return await asyncio.gather(
        *(batcher.score(model, rows) for rows in requests), return_exceptions=True
    )


def test_concurrent_requests_share_one_call_and_get_their_own_rows():
    recorder = Recorder()
    batcher = Batcher(recorder, max_rows=100)
    model = {"factor": 2.0}
    requests = _requests(1, 3, 2, 1, 5)
    results = asyncio.run(_score_all(batcher, model, requests))
    # all five were waiting when the first batch started: one call
    assert [size for _, size in recorder.calls] == [12]
    for rows, (scores, table) in zip(requests, results, strict=True):
        xs = [row["x"] for row in rows]
        assert scores.tolist() == [2.0 * x for x in xs]
        assert table.column("x").to_pylist() == xs


def test_batches_stay_under_max_rows():
    recorder = Recorder(delay_s=0.02)
    batcher = Batcher(recorder, max_rows=4)
    results = asyncio.run(_score_all(batcher, {"factor": 1.0}, _requests(1, 2, 2, 3, 1, 1, 6)))
    sizes = [size for _, size in recorder.calls]
    # a request larger than max_rows is still scored, alone
    assert all(size <= 4 or size == 6 for size in sizes) and sum(sizes) == 16
    assert 6 in sizes and len(sizes) < 7
    assert all(not isinstance(result, BaseException) for result in results)


def test_a_bad_request_fails_alone():
    recorder = Recorder()
    batcher = Batcher(recorder, max_rows=100, individual_errors=(BadRow,))
    requests = _requests(1, 2, 1, 2)
    requests[2] = [{"x": -1}]
    results = asyncio.run(_score_all(batcher, {"factor": 1.0}, requests))
    assert isinstance(results[2], BadRow)
    for index in (0, 1, 3):
        assert results[index][0].tolist() == [row["x"] for row in requests[index]]


def test_a_store_failure_fails_every_request_of_the_batch():
    def down(model, rows):
        raise ConnectionError("redis down")

    results = asyncio.run(_score_all(Batcher(down, 100), {"factor": 1.0}, _requests(1, 1, 1)))
    assert all(isinstance(result, ConnectionError) for result in results)


def test_requests_for_different_models_are_never_merged():
    recorder = Recorder()
    batcher = Batcher(recorder, max_rows=100)
    old, new = {"factor": 1.0}, {"factor": 10.0}

    async def both():
        first = [batcher.score(old, rows) for rows in _requests(1, 1, 1)]
        second = [batcher.score(new, rows) for rows in _requests(1, 1, start=100)]
        return await asyncio.gather(*first, *second)

    results = asyncio.run(both())
    assert [(model is old, size) for model, size in recorder.calls] == [(True, 3), (False, 2)]
    assert [scores.tolist() for scores, _ in results] == [[0.0], [1.0], [2.0], [1000.0], [1010.0]]


@pytest.mark.parametrize("max_batches", [1, 2])
def test_every_request_is_answered_under_many_concurrent_ones(max_batches):
    recorder = Recorder(delay_s=0.001)
    batcher = Batcher(recorder, max_rows=16, max_batches=max_batches)
    requests = _requests(*([1, 2, 3] * 40))
    results = asyncio.run(_score_all(batcher, {"factor": 1.0}, requests))
    for rows, (scores, _) in zip(requests, results, strict=True):
        assert scores.tolist() == [row["x"] for row in rows]
    assert batcher.requests == len(requests) and batcher.batches == len(recorder.calls)
    assert batcher.batches < len(requests)
