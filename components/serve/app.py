"""The HTTP app: the Vertex AI custom-container routes, the Open Inference Protocol v2 routes
(KServe, Triton clients) and Prometheus metrics, over one `ChampionHolder`.

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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from components.errors import InputDataError
from components.serve.batching import Batcher
from components.serve.champion import ChampionHolder, Loaded
from components.serve.prediction_log import PredictionLog
from components.serve.requests import (
    HEADER_LENGTH,
    RequestError,
    ScoringRequest,
    parse_infer,
    parse_vertex,
)
from components.serve.settings import ServeSettings

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from prometheus_client import CollectorRegistry

log = logging.getLogger("portside.serve")
SERVER_NAME = "portside"
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


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
            instances=Counter("portside_instances", "Instances scored", registry=registry),
            model=Gauge(
                "portside_model_version",
                "1 for the champion version being served",
                ["model", "version"],
                registry=registry,
            ),
            store_errors=Counter(
                "portside_online_store_errors",
                "Online-store reads that failed",
                registry=registry,
            ),
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


def score(loaded: Loaded, rows: list[dict[str, Any]]) -> tuple[np.ndarray, pa.Table]:
    """The champion's scores for `rows` and the feature table it scored (blocking)."""
    try:
        frame = loaded.lookup.lookup_table(rows)
    except InputDataError as error:
        raise RequestError(str(error)) from None
    except Exception as error:
        raise Unavailable(f"online store unavailable: {type(error).__name__}: {error}") from None
    return loaded.model.predict(frame), frame


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
    holder: ChampionHolder,
    prediction_log: PredictionLog | None = None,
) -> Starlette:
    metrics = Metrics.create(prediction_log)
    batcher = Batcher(
        score, settings.max_batch_rows, settings.max_batches, individual_errors=(RequestError,)
    )

    def record(loaded: Loaded, scores: np.ndarray, frame: pa.Table, request_id=None) -> None:
        if prediction_log is not None:  # the instance's fields, then what the model saw
            columns = list(dict.fromkeys([*loaded.field_types, *loaded.feature_columns]))
            features = _features(frame, columns)
            prediction_log.record(loaded.version, "champion", scores.tolist(), features, request_id)

    def champion() -> Loaded:
        loaded = holder.current
        if loaded is None:
            raise Unavailable(holder.error or "no champion loaded")
        return loaded

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
        loaded = champion()
        parsed = parse_vertex(body, loaded.field_types, settings.max_instances)
        scores, frame = await batcher.score(loaded, parsed.rows)
        metrics.instances.inc(len(parsed.rows))
        record(loaded, scores, frame)
        predictions = [
            {loaded.output: float(value), "model_version": loaded.version} for value in scores
        ]
        if parsed.return_features:
            for prediction, features in zip(
                predictions, _features(frame, loaded.feature_columns), strict=True
            ):
                prediction["features"] = features
        return JSONResponse({"predictions": predictions})

    async def infer(request: Request, body: bytes) -> Response:
        loaded = champion()
        _check_model_name(request, settings)
        known = [loaded.output, *loaded.feature_columns]
        parsed = parse_infer(
            body,
            request.headers.get(HEADER_LENGTH),
            loaded.field_types,
            settings.max_instances,
            known,
        )
        scores, frame = await batcher.score(loaded, parsed.rows)
        metrics.instances.inc(len(parsed.rows))
        record(loaded, scores, frame, parsed.request_id)
        return _infer_response(settings.model_name, loaded, parsed, scores, frame)

    async def vertex_health(request: Request) -> Response:
        loaded = holder.current
        if loaded is None:
            return JSONResponse({"status": "unavailable", "reason": holder.error}, 503)
        return JSONResponse({"status": "ready", "model_version": loaded.version})

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

    async def model_metadata(request: Request) -> Response:
        try:
            _check_model_name(request, settings)
            loaded = champion()
        except RequestError as error:
            return JSONResponse({"error": str(error)}, error.status)
        except Unavailable as error:
            return JSONResponse({"error": str(error)}, 503)
        return JSONResponse(
            {
                "name": settings.model_name,
                "versions": [loaded.version],
                "platform": "tensorflow_savedmodel",
                "inputs": [
                    {"name": name, "datatype": _oip_datatype(kind), "shape": [-1]}
                    for name, kind in loaded.field_types.items()
                ],
                "outputs": [{"name": loaded.output, "datatype": "FP32", "shape": [-1]}],
            }
        )

    async def model_ready(request: Request) -> Response:
        try:
            _check_model_name(request, settings)
        except RequestError as error:
            return JSONResponse({"error": str(error)}, error.status)
        return await ready(request)

    async def metrics_page(request: Request) -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        loaded = holder.current
        metrics.model.clear()
        if loaded is not None:
            metrics.model.labels(settings.model_name, loaded.version).set(1)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def post(route: str, handler) -> Route:
        async def endpoint(request: Request) -> Response:
            return await answer(route, handler, request)

        return Route(route, endpoint, methods=["POST"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await run_in_threadpool(holder.refresh)
        if holder.current is None:
            log.warning("starting without a champion: %s", holder.error)
        reloading = asyncio.create_task(_reload_forever(holder, settings.reload_interval_s))
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
        post(settings.predict_route, vertex_predict),
        Route("/v2", server_metadata, methods=["GET"]),
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/v2/models/{name}", model_metadata, methods=["GET"]),
        Route("/v2/models/{name}/ready", model_ready, methods=["GET"]),
        post("/v2/models/{name}/infer", infer),
        Route("/metrics", metrics_page, methods=["GET"]),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _reload_forever(holder: ChampionHolder, interval_s: float) -> None:
    while True:
        await asyncio.sleep(interval_s)
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


def _infer_response(
    model_name: str,
    loaded: Loaded,
    parsed: ScoringRequest,
    scores: np.ndarray,
    frame: pa.Table,
) -> Response:
    """The OIP response: the asked outputs, as JSON data or binary tensors."""
    import numpy as np
    import pyarrow.compute as pc

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
