"""The app's canary and shadow paths with stand-in models and lookups (no Feast, no TensorFlow):
a failing canary leaves the request to the champion, a failing shadow never reaches the
client, the shadow is logged under the answer's request id, and only the answer's online
read counts in the feature-age metric."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest

from portside.components.serve.app import create_app
from portside.components.serve.arms import Arms
from portside.components.serve.holder import Loaded
from portside.components.serve.settings import ServeSettings

FIELDS = {"user_id": "INT64", "amount": "DOUBLE"}


@pytest.fixture(autouse=True)
def in_process_metrics(monkeypatch):
    """Metrics kept in this process, as the server has them (it imports prometheus_client
    before Feast): another test of this worker may have imported `feast.metrics`, which sets
    PROMETHEUS_MULTIPROCESS_DIR and so switched prometheus_client to its multiprocess mode."""
    from prometheus_client import values

    monkeypatch.setattr(values, "ValueClass", values.MutexValue)


class Lookup:
    """Rows plus one feature `f` = amount * 2; raises `fails` when set."""

    def __init__(self, fails: Exception | None = None) -> None:
        self.fails = fails
        self.service = SimpleNamespace(join_keys=["user_id"])

    def read(self, rows):
        if self.fails is not None:
            raise self.fails
        table = pa.Table.from_pylist(rows)
        table = table.append_column("f", pa.array([row["amount"] * 2 for row in rows]))
        return SimpleNamespace(table=table, ages_s={"view": [60.0] * len(rows)})


class Model:
    def __init__(self, factor: float) -> None:
        self.factor = factor
        self.spec = SimpleNamespace(output="score", columns=["f"], numeric=["f"])

    def predict(self, table: pa.Table) -> np.ndarray:
        return np.asarray(table.column("f").to_pylist()) * self.factor


class Log:
    """The prediction log's interface, keeping what it is given."""

    logged = dropped = failed = 0

    def __init__(self) -> None:
        self.rows: list[tuple[str, str, list[float], str | None]] = []

    def record(self, version, arm, scores, features, request_id=None) -> None:
        self.rows.append((version, arm, scores, request_id))

    def close(self) -> None:
        pass


def _loaded(version: str, factor: float, fails: Exception | None = None) -> Loaded:
    return Loaded(version, Model(factor), Lookup(fails), FIELDS, Path("unused"))


def _app(challenger: Loaded | None, log: Log | None = None, **options):
    settings = ServeSettings(
        feature_repo="unused",
        model_name="m",
        challenger_version=challenger.version if challenger else "",
        prediction_log="log" if options.get("shadow") else "",
        **options,
    )
    arms = Arms(
        SimpleNamespace(current=_loaded("3", 1.0), describe=lambda: "the champion"),
        SimpleNamespace(current=challenger, error="not loaded") if challenger else None,
        options.get("canary_percent", 0.0),
        options.get("shadow", False),
    )
    return create_app(settings, arms, log)


def _ask(app, *paths_and_bodies):
    import httpx

    async def go():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://server") as client:
            answers = []
            for path, body in paths_and_bodies:
                if body is None:
                    answers.append(await client.get(path))
                else:
                    answers.append(await client.post(path, json=body))
            return answers

    return asyncio.run(go())


BODY = {"instances": [{"user_id": 1, "amount": 10.0}, {"user_id": 2, "amount": 5.0}]}


def _metric(text: str, series: str) -> float:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.split()[-1])
    return 0.0  # not exported yet


def _change(app, series: list[str], request) -> tuple[object, list[float]]:
    """The answer to `request` and how much each series grew meanwhile (a test process that
    imported Feast's metrics module runs prometheus_client in multiprocess mode, where series of
    the same name share their values across apps)."""
    before, answer, after = _ask(app, ("/metrics", None), request, ("/metrics", None))
    grown = [_metric(after.text, s) - _metric(before.text, s) for s in series]
    return answer, grown


def test_the_canary_scores_with_its_own_model():
    (answer,) = _ask(_app(_loaded("4", 10.0), canary_percent=100), ("/predict", BODY))
    assert answer.status_code == 200
    assert [(p["model_version"], p["score"]) for p in answer.json()["predictions"]] == [
        ("4", 200.0),
        ("4", 100.0),
    ]


@pytest.mark.parametrize("failure", [RuntimeError("redis gone"), ValueError("bad column")])
def test_a_canary_that_cannot_score_leaves_the_request_to_the_champion(failure):
    app = _app(_loaded("4", 10.0, fails=failure), canary_percent=100)
    series = ["portside_canary_fallbacks_total", 'portside_instances_total{arm="champion"}']
    answer, grown = _change(app, series, ("/predict", BODY))
    assert answer.status_code == 200, answer.text
    assert {p["model_version"] for p in answer.json()["predictions"]} == {"3"}
    assert grown == [1, 2]


def test_a_failing_shadow_never_reaches_the_client():
    log = Log()
    app = _app(_loaded("1", 10.0, fails=RuntimeError("boom")), log, shadow=True)
    answer, grown = _change(app, ["portside_shadow_errors_total"], ("/predict", BODY))
    assert answer.status_code == 200
    assert {p["model_version"] for p in answer.json()["predictions"]} == {"3"}
    assert grown == [1]
    assert [(version, arm) for version, arm, _, _ in log.rows] == [("3", "champion")]


def test_the_shadow_is_logged_under_the_answers_request_and_not_counted_as_a_read():
    log = Log()
    app = _app(_loaded("1", 10.0), log, shadow=True)
    series = ['portside_feature_age_seconds_count{view="view"}']
    answer, grown = _change(app, series, ("/predict", BODY))
    assert [p["score"] for p in answer.json()["predictions"]] == [20.0, 10.0]  # the champion's
    (champion, shadow) = log.rows
    assert (champion[:3], shadow[:3]) == (
        ("3", "champion", [20.0, 10.0]),
        ("1", "shadow", [200.0, 100.0]),
    )
    assert champion[3] == shadow[3] is not None  # one request id for both
    assert grown == [2]  # the answer's two instances, not the shadow's read


def test_a_challenger_that_became_the_champion_is_no_arm():
    app = _app(_loaded("3", 10.0), canary_percent=100)
    (answer,) = _ask(app, ("/predict", BODY))
    assert [p["score"] for p in answer.json()["predictions"]] == [20.0, 10.0]
