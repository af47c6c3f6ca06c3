"""The HTTP app: the Vertex AI custom-container routes, the Open Inference Protocol v2 routes
(KServe, Triton clients) and Prometheus metrics, over the champion and an optional challenger
(`Arms`: canary or shadow).

Scoring (an online-store read and the model's signature) is blocking work: it runs in the
thread pool, so the event loop keeps accepting requests, health checks and metrics.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import struct
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from portside.components.errors import InputDataError
from portside.components.serve.arms import CHAMPION_ARM, SHADOW_ARM, Arms, Choice
from portside.components.serve.batching import Batcher
from portside.components.serve.holder import Loaded, ModelHolder
from portside.components.serve.prediction_log import PredictionLog
from portside.components.serve.requests import (
    HEADER_LENGTH,
    RequestError,
    ScoringRequest,
    parse_infer,
    parse_vertex,
)
from portside.components.serve.settings import ServeSettings

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from prometheus_client import CollectorRegistry

log = logging.getLogger("portside.serve")
SERVER_NAME = "portside"
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)
# How old the online values a lookup read are: a minute up to a month (materialization lag).
SHADOW_MAX_PENDING_ROWS = 10_000
AGE_BUCKETS = (60, 300, 900, 3600, 6 * 3600, 86400, 2 * 86400, 7 * 86400, 30 * 86400)


class Unavailable(Exception):
    """The champion or the online store cannot answer now: 503 with the reason."""


@dataclass
class Metrics:
    """The server's Prometheus metrics, in a registry of its own (no process-global state)."""

    registry: CollectorRegistry
    requests: Any
    latency: Any
    instances: Any
    model: Any
    store_errors: Any
    feature_age: Any
    missing_rows: Any
    shadow_errors: Any
    shadow_dropped: Any
    canary_fallbacks: Any

    @classmethod
    def create(cls, prediction_log: PredictionLog | None = None) -> Metrics:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        registry = CollectorRegistry()
        if prediction_log is not None:
            registry.register(_PredictionLogCollector(prediction_log))
        return cls(
            registry=registry,
            requests=Counter(
                "portside_requests",
                "Requests by route and status",
                ["route", "status"],
                registry=registry,
            ),
            latency=Histogram(
                "portside_request_seconds",
                "Request latency by route",
                ["route"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            instances=Counter(
                "portside_instances", "Instances scored, by arm", ["arm"], registry=registry
            ),
            model=Gauge(
                "portside_model_version",
                "1 for each version being served, by arm (champion, canary, shadow)",
                ["model", "version", "arm"],
                registry=registry,
            ),
            store_errors=Counter(
                "portside_online_store_errors",
                "Online-store reads that failed",
                registry=registry,
            ),
            feature_age=Histogram(
                "portside_feature_age_seconds",
                "Age of the online feature values a lookup read, by feature view",
                ["view"],
                buckets=AGE_BUCKETS,
                registry=registry,
            ),
            missing_rows=Counter(
                "portside_feature_rows_missing",
                "Instances whose entity has no online row, by feature view",
                ["view"],
                registry=registry,
            ),
            shadow_errors=Counter(
                "portside_shadow_errors",
                "Requests the shadow model could not score (never seen by clients)",
                registry=registry,
            ),
            shadow_dropped=Counter(
                "portside_shadow_dropped",
                "Requests not shadowed: the shadow's queue was full",
                registry=registry,
            ),
            canary_fallbacks=Counter(
                "portside_canary_fallbacks",
                "Canary requests the canary could not score, answered by the champion",
                registry=registry,
            ),
        )

    def observe_ages(self, ages_s: dict[str, list[float | None]]) -> None:
        for view, ages in ages_s.items():
            found = [age for age in ages if age is not None]
            histogram = self.feature_age.labels(view)
            for age in found:
                histogram.observe(age)
            if len(found) < len(ages):
                self.missing_rows.labels(view).inc(len(ages) - len(found))


class _BatcherCollector:
    """How many requests were scored in how many batches (model calls)."""

    def __init__(self, batcher: Batcher) -> None:
        self.batcher = batcher

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        yield CounterMetricFamily(
            "portside_batches", "Batches scored (one lookup, one model call)", self.batcher.batches
        )
        yield CounterMetricFamily(
            "portside_batched_requests", "Requests scored in those batches", self.batcher.requests
        )


class _PredictionLogCollector:
    """The prediction log's counts, read when /metrics is scraped."""

    def __init__(self, prediction_log: PredictionLog) -> None:
        self.prediction_log = prediction_log

    def collect(self):
        from prometheus_client.core import CounterMetricFamily

        counts = {
            "written": (self.prediction_log.logged, "Prediction-log rows written"),
            "dropped": (self.prediction_log.dropped, "Rows dropped: the log's buffer was full"),
            "failed": (self.prediction_log.failed, "Rows lost to a failed write"),
        }
        for name, (value, doc) in counts.items():
            yield CounterMetricFamily(f"portside_prediction_log_{name}", doc, value=value)


def scorer(
    metrics: Metrics, observe_ages: bool = True
) -> Callable[[Loaded, list[dict[str, Any]]], Any]:
    """The blocking score function of a batcher; `observe_ages`: export the feature age of
    what it reads (off for the shadow, whose reads repeat the answer's)."""

    def score(loaded: Loaded, rows: list[dict[str, Any]]) -> tuple[np.ndarray, pa.Table]:
        """The model's scores for `rows` and the feature table it scored (blocking)."""
        try:
            read = loaded.lookup.read(rows)
        except InputDataError as error:
            raise RequestError(str(error)) from None
        except Exception as error:
            raise Unavailable(
                f"online store unavailable: {type(error).__name__}: {error}"
            ) from None
        if observe_ages:
            metrics.observe_ages(read.ages_s)
        return loaded.model.predict(read.table), read.table

    return score


@dataclass(frozen=True)
class Scored:
    """A request's answer: the arm and model that scored it, its parsed input, the scores
    and the feature table they came from."""

    choice: Choice
    parsed: ScoringRequest
    scores: np.ndarray
    frame: pa.Table
    request_id: str

    @property
    def loaded(self) -> Loaded:
        return self.choice.loaded


def _json_value(value: Any) -> Any:
    """A feature value as JSON holds it (NaN and NA are null)."""
    if value is None:
        return None
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _features(frame: pa.Table, columns: list[str]) -> list[dict[str, Any]]:
    return [
        {column: _json_value(value) for column, value in row.items()}
        for row in frame.select(columns).to_pylist()
    ]


def create_app(
    settings: ServeSettings,
    arms: Arms,
    prediction_log: PredictionLog | None = None,
) -> Starlette:
    metrics = Metrics.create(prediction_log)
    batcher = Batcher(
        scorer(metrics),
        settings.max_batch_rows,
        settings.max_batches,
        individual_errors=(RequestError,),
    )
    metrics.registry.register(_BatcherCollector(batcher))
    # The shadow has a batcher of its own, so its batches never hold up the answers, and a
    # bound: past SHADOW_MAX_PENDING_ROWS rows waiting, shadow work is dropped and counted.
    shadow_batcher = Batcher(
        scorer(metrics, observe_ages=False), settings.max_batch_rows, 1, (RequestError,)
    )
    holder = arms.champion

    def record(arm: str, loaded: Loaded, scores: np.ndarray, frame: pa.Table, request_id: str):
        if prediction_log is not None:  # the instance's fields, then what the model saw
            columns = list(dict.fromkeys([*loaded.field_types, *loaded.feature_columns]))
            features = _features(frame, columns)
            prediction_log.record(loaded.version, arm, scores.tolist(), features, request_id)

    def champion() -> Loaded:
        loaded = holder.current
        if loaded is None:
            raise Unavailable(holder.error or "no champion loaded")
        return loaded

    async def scored(parse: Callable[[Loaded], ScoringRequest]) -> Scored:
        """Parse the request for the model of its arm, score it and log it. A canary that
        cannot score a request the champion can leaves it to the champion (counted)."""
        served = champion()
        parsed = as_champion = parse(served)
        choice = arms.answering(served, parsed.rows[0])
        try:
            if choice.loaded is not served:  # its fields and outputs may differ
                parsed = parse(choice.loaded)
            scores, frame = await batcher.score(choice.loaded, parsed.rows)
        except (RequestError, Unavailable) as error:
            if choice.loaded is served:
                raise
            metrics.canary_fallbacks.inc()
            log.warning(
                "canary v%s could not score, the champion does: %s", choice.loaded.version, error
            )
            choice, parsed = Choice(CHAMPION_ARM, served), as_champion
            scores, frame = await batcher.score(served, parsed.rows)
        request_id = parsed.request_id or uuid.uuid4().hex
        metrics.instances.labels(choice.arm).inc(len(parsed.rows))
        record(choice.arm, choice.loaded, scores, frame, request_id)
        return Scored(choice, parsed, scores, frame, request_id)

    def in_shadow(answer: Scored, parse: Callable[[Loaded], ScoringRequest]):
        """The shadow model's scoring of the same request, run after the answer is sent."""
        shadow = arms.shadowing(answer.loaded)
        if shadow is None:
            return None

        async def run() -> None:
            if shadow_batcher.pending_rows >= SHADOW_MAX_PENDING_ROWS:
                metrics.shadow_dropped.inc()  # the shadow is behind: never queue without bound
                return
            try:
                same_input = shadow.field_types == answer.loaded.field_types
                parsed = answer.parsed if same_input else parse(shadow)
                scores, frame = await shadow_batcher.score(shadow, parsed.rows)
                record(SHADOW_ARM, shadow, scores, frame, answer.request_id)
            except Exception as error:  # noqa: BLE001  (a shadow never fails a request)
                metrics.shadow_errors.inc()
                log.warning("shadow v%s could not score: %s", shadow.version, error)
                return
            metrics.instances.labels(SHADOW_ARM).inc(len(parsed.rows))

        return BackgroundTask(run)

    async def answer(route: str, handler, request: Request) -> Response:
        """Run `handler` (async, returning a Response), turning errors into JSON answers
        with the reason, and count and time it."""
        started = time.perf_counter()
        try:
            body = await _read_body(request, settings.max_body_bytes)
            response = await handler(request, body)
        except RequestError as error:
            response = JSONResponse({"error": str(error)}, status_code=error.status)
        except Unavailable as error:
            response = JSONResponse({"error": str(error)}, status_code=503)
            if str(error).startswith("online store"):
                metrics.store_errors.inc()
        except Exception as error:  # a bug: say what, keep serving
            log.exception("%s failed", route)
            response = JSONResponse(
                {"error": f"internal error: {type(error).__name__}: {error}"}, status_code=500
            )
        metrics.requests.labels(route, str(response.status_code)).inc()
        metrics.latency.labels(route).observe(time.perf_counter() - started)
        return response

    async def vertex_predict(request: Request, body: bytes) -> Response:
        def parse(loaded: Loaded) -> ScoringRequest:
            return parse_vertex(body, loaded.field_types, settings.max_instances)

        answer = await scored(parse)
        loaded = answer.loaded
        predictions = [
            {loaded.output: float(value), "model_version": loaded.version}
            for value in answer.scores
        ]
        if answer.parsed.return_features:
            for prediction, features in zip(
                predictions, _features(answer.frame, loaded.feature_columns), strict=True
            ):
                prediction["features"] = features
        return JSONResponse({"predictions": predictions}, background=in_shadow(answer, parse))

    async def infer(request: Request, body: bytes) -> Response:
        _check_model_name(request, settings)

        def parse(loaded: Loaded) -> ScoringRequest:
            known = [loaded.output, *loaded.feature_columns]
            header = request.headers.get(HEADER_LENGTH)
            return parse_infer(body, header, loaded.field_types, settings.max_instances, known)

        answer = await scored(parse)
        response = _infer_response(settings.model_name, answer)
        response.background = in_shadow(answer, parse)
        return response

    def challenger_state() -> dict[str, Any] | None:
        challenger = arms.challenger
        if challenger is None:
            return None
        loaded = challenger.current
        arm = arms.challenger_arm
        if loaded is None:  # its share goes to the champion meanwhile
            return {"arm": arm, "status": "unavailable", "reason": challenger.error}
        return {"arm": arm, "status": "ready", "model_version": loaded.version}

    async def vertex_health(request: Request) -> Response:
        loaded = holder.current
        if loaded is None:
            return JSONResponse({"status": "unavailable", "reason": holder.error}, 503)
        state: dict[str, Any] = {"status": "ready", "model_version": loaded.version}
        if arms.challenger is not None:
            state["challenger"] = challenger_state()
        return JSONResponse(state)

    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        if holder.current is None:
            return JSONResponse({"ready": False, "reason": holder.error}, 503)
        return JSONResponse({"ready": True})

    async def server_metadata(request: Request) -> Response:
        return JSONResponse(
            {"name": SERVER_NAME, "version": _version(), "extensions": ["binary_tensor_data"]}
        )

    async def model_metadata(request: Request, body: bytes) -> Response:
        _check_model_name(request, settings)
        loaded = champion()
        return JSONResponse(
            {
                "name": settings.model_name,
                "versions": [served.version for arm, served in served_arms() if arm != SHADOW_ARM],
                "platform": "tensorflow_savedmodel",
                "inputs": [
                    {"name": name, "datatype": _oip_datatype(kind), "shape": [-1]}
                    for name, kind in loaded.field_types.items()
                ],
                "outputs": [{"name": loaded.output, "datatype": "FP32", "shape": [-1]}],
            }
        )

    async def model_ready(request: Request, body: bytes) -> Response:
        _check_model_name(request, settings)
        return await ready(request)

    async def metrics_page(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        with warnings.catch_warnings():  # Feast sets PROMETHEUS_MULTIPROC_DIR: a false alarm
            warnings.simplefilter("ignore", UserWarning)
            metrics.model.clear()
        for arm, served in served_arms():
            metrics.model.labels(settings.model_name, served.version, arm).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def openapi(request: Request, body: bytes) -> Response:
        from portside.components.serve.openapi import openapi_document

        loaded = champion()  # the instance fields are the served model's
        document = openapi_document(
            settings.model_name,
            loaded.output,
            loaded.field_types,
            settings.predict_route,
            settings.health_route,
            settings.max_instances,
        )
        return JSONResponse(document)

    def served_arms() -> list[tuple[str, Loaded]]:
        arms_now = [(CHAMPION_ARM, holder.current)]
        if arms.challenger is not None:
            arms_now.append((arms.challenger_arm, arms.challenger.current))
        return [(arm, loaded) for arm, loaded in arms_now if loaded is not None]

    def answered(route: str, handler, method: str = "POST") -> Route:
        """A route whose errors become JSON answers, counted and timed (`answer`)."""

        async def endpoint(request: Request) -> Response:
            return await answer(route, handler, request)

        return Route(route, endpoint, methods=[method])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for each in arms.holders():
            await run_in_threadpool(each.refresh)
            if each.current is None:
                log.warning("starting without %s: %s", each.describe(), each.error)
        reloading = asyncio.create_task(_reload_forever(arms.holders(), settings.reload_interval_s))
        try:
            yield
        finally:
            reloading.cancel()
            if prediction_log is not None:  # after the last request: write what is pending
                await run_in_threadpool(prediction_log.close)
                log.info(
                    "prediction log: %d rows written, %d dropped, %d failed -> %s",
                    prediction_log.logged,
                    prediction_log.dropped,
                    prediction_log.failed,
                    prediction_log.folder,
                )

    routes = [
        Route(settings.health_route, vertex_health, methods=["GET"]),
        answered(settings.predict_route, vertex_predict),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        answered("/v2/models/{name}", model_metadata, "GET"),
        answered("/v2/models/{name}/ready", model_ready, "GET"),
        answered("/v2/models/{name}/infer", infer),
        Route("/metrics", metrics_page, methods=["GET"]),
        answered("/openapi.json", openapi, "GET"),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _reload_forever(holders: list[ModelHolder], interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
        for holder in holders:
            await run_in_threadpool(holder.refresh)


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 once it exceeds `limit` bytes (read no further)."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"body: {declared} bytes, at most {limit}", 413)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"body: more than {limit} bytes", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _check_model_name(request: Request, settings: ServeSettings) -> None:
    name = request.path_params.get("name")
    if name is not None and name != settings.model_name:
        raise RequestError(
            f"model {name!r} is not served here (this serves {settings.model_name!r})", 404
        )


def _oip_datatype(value_type: str) -> str:
    return {"INT64": "INT64", "INT32": "INT32", "DOUBLE": "FP64", "FLOAT": "FP32"}.get(
        value_type, "BOOL" if value_type == "BOOL" else "BYTES"
    )


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("portside")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _infer_response(model_name: str, answer: Scored) -> Response:
    """The OIP response: the asked outputs, as JSON data or binary tensors."""
    import numpy as np
    import pyarrow.compute as pc

    loaded, parsed, scores, frame = answer.loaded, answer.parsed, answer.scores, answer.frame

    tensors: list[tuple[str, str, list[Any] | np.ndarray]] = []
    for name in parsed.outputs:
        if name == loaded.output:
            tensors.append((name, "FP32", np.asarray(scores, dtype=np.float32)))
        elif name in loaded.model.spec.numeric:
            column = pc.cast(frame.column(name), "float64")
            tensors.append((name, "FP64", column.to_numpy(zero_copy_only=False)))
        else:
            column = pc.fill_null(pc.cast(frame.column(name), "string"), "")
            tensors.append((name, "BYTES", column.to_pylist()))
    outputs, binary = [], []
    for name, datatype, values in tensors:
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": [len(values)]}
        if parsed.binary_outputs:
            raw = _to_binary(datatype, values)
            entry["parameters"] = {"binary_data_size": len(raw)}
            binary.append(raw)
        else:
            entry["data"] = [_json_value(v) for v in values]
        outputs.append(entry)
    document: dict[str, Any] = {
        "model_name": model_name,
        "model_version": loaded.version,
        "outputs": outputs,
    }
    if parsed.request_id is not None:
        document["id"] = parsed.request_id
    header = json.dumps(document).encode()
    if not parsed.binary_outputs:
        return Response(header, media_type="application/json")
    return Response(
        header + b"".join(binary),
        media_type="application/octet-stream",
        headers={HEADER_LENGTH: str(len(header))},
    )


def _to_binary(datatype: str, values: Any) -> bytes:
    import numpy as np

    if datatype == "BYTES":
        parts = []
        for value in values:
            encoded = str(value).encode()
            parts.append(struct.pack("<I", len(encoded)) + encoded)
        return b"".join(parts)
    dtype = {"FP32": "<f4", "FP64": "<f8"}[datatype]
    return np.asarray(values, dtype=dtype).tobytes()
