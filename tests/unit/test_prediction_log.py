"""The prediction log never blocks the request path: a slow disk drops and counts rows."""

from __future__ import annotations

import threading
import time

import pandas as pd

from portside.components.serve.prediction_log import PredictionLog, write_parquet


def test_rows_are_written_by_date_and_read_back(tmp_path):
    log = PredictionLog(tmp_path, flush_interval_s=0.05)
    log.record("3", "champion", [0.25, 0.5], [{"user": 1, "x": 1.5}, {"user": 2, "x": None}], "r1")
    log.close()
    assert (log.logged, log.dropped, log.failed) == (2, 0, 0)
    (partition,) = tmp_path.iterdir()
    assert partition.name.startswith("date=")
    frame = pd.read_parquet(tmp_path)
    assert list(frame["score"]) == [0.25, 0.5] and list(frame["instance"]) == [0, 1]
    assert set(frame["request_id"]) == {"r1"} and set(frame["model_version"]) == {"3"}
    assert not [p for p in partition.iterdir() if p.name.startswith(".")]  # no partial file


def test_a_slow_disk_drops_and_counts_instead_of_blocking(tmp_path):
    release = threading.Event()

    def slow_writer(folder, rows):
        release.wait(10)  # the disk hangs until released
        write_parquet(folder, rows)

    log = PredictionLog(tmp_path, max_pending_rows=100, flush_rows=10, writer=slow_writer)
    slowest = 0.0
    for i in range(30):
        started = time.perf_counter()
        log.record("1", "champion", [0.1] * 10, [{"i": i}] * 10)
        slowest = max(slowest, time.perf_counter() - started)
    release.set()
    log.close()
    assert slowest < 0.05  # record() returned while the writer hung
    assert log.dropped > 0 and log.failed == 0
    assert log.logged + log.dropped == 300
    assert len(pd.read_parquet(tmp_path)) == log.logged


def test_a_failing_disk_counts_what_it_lost(tmp_path):
    def broken(folder, rows):
        raise OSError("No space left on device")

    log = PredictionLog(tmp_path, flush_interval_s=0.01, writer=broken)
    log.record("1", "champion", [0.1, 0.2], [{}, {}])
    log.close()
    assert (log.logged, log.dropped, log.failed) == (0, 0, 2)
