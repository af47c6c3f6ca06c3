"""`python -m portside.components serve` (the image's serving entrypoint) and `portside serve`: the
flags, the settings they make, and running the app on uvicorn until SIGTERM or Ctrl-C.

uvicorn stops accepting on SIGTERM and lets in-flight requests finish (up to
`--graceful-shutdown-s`), which is what Kubernetes and Vertex AI send before they stop a pod.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

from portside.components.errors import ConfigurationError
from portside.components.push.champion import CHAMPION
from portside.components.serve.settings import (
    DEFAULT_MAX_BATCH_ROWS,
    DEFAULT_MAX_BATCHES,
    DEFAULT_MAX_BODY_BYTES,
    DEFAULT_MAX_INSTANCES,
    DEFAULT_RELOAD_INTERVAL_S,
    ServeSettings,
    vertex_defaults,
)

GRACEFUL_SHUTDOWN_S = 30


def add_arguments(
    parser: argparse.ArgumentParser, model_name: str | None = None, prediction_log: str = ""
) -> None:
    """The server's flags; `model_name` is a default (else the flag is required)."""
    vertex = vertex_defaults()
    parser.add_argument("--feature-repo", default="feature_repo", help="Feast repo path")
    parser.add_argument(
        "--model-name",
        required=model_name is None,
        default=model_name,
        help="registered model whose champion is served",
    )
    parser.add_argument("--registry", choices=("mlflow", "vertex"), default="mlflow")
    parser.add_argument("--tracking-uri", default="", help="MLflow URI (default: data/mlflow)")
    parser.add_argument("--vertex-project", default="")
    parser.add_argument("--vertex-location", default="")
    parser.add_argument("--vertex-api-endpoint", default="")
    parser.add_argument("--host", default="127.0.0.1", help="0.0.0.0 in a container")
    parser.add_argument(
        "--port", type=int, default=vertex["port"], help="default: $AIP_HTTP_PORT or 8080"
    )
    parser.add_argument("--predict-route", default=vertex["predict_route"])
    parser.add_argument("--health-route", default=vertex["health_route"])
    parser.add_argument("--max-instances", type=int, default=DEFAULT_MAX_INSTANCES)
    parser.add_argument("--max-body-bytes", type=int, default=DEFAULT_MAX_BODY_BYTES)
    parser.add_argument(
        "--max-batch-rows",
        type=int,
        default=DEFAULT_MAX_BATCH_ROWS,
        help="concurrent requests are scored together, up to this many rows per model call",
    )
    parser.add_argument(
        "--max-batches",
        type=int,
        default=DEFAULT_MAX_BATCHES,
        help="batches scored at the same time (one per core the server may use)",
    )
    parser.add_argument(
        "--reload-interval-s",
        type=float,
        default=DEFAULT_RELOAD_INTERVAL_S,
        help="how often the registry's champion alias is checked (hot reload)",
    )
    parser.add_argument(
        "--prediction-log",
        default=prediction_log,
        help="folder for the prediction log, Parquet partitioned by date (default: "
        + (prediction_log or "off")
        + ")",
    )
    parser.add_argument(
        "--model-version",
        default=CHAMPION,
        help="serve this version number instead of following the champion alias",
    )
    parser.add_argument(
        "--challenger-version",
        default="",
        help="a version scored beside the champion: with --canary-percent or --shadow",
    )
    parser.add_argument(
        "--canary-percent",
        type=float,
        default=0.0,
        help="share of requests the challenger answers (by a hash of the entity keys)",
    )
    parser.add_argument(
        "--shadow",
        action="store_true",
        help="the challenger scores every request into the prediction log, never answers",
    )
    parser.add_argument("--graceful-shutdown-s", type=int, default=GRACEFUL_SHUTDOWN_S)
    parser.add_argument(
        "--no-access-log", action="store_true", help="no log line per request (high traffic)"
    )


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    return ServeSettings(
        feature_repo=args.feature_repo,
        model_name=args.model_name,
        registry=args.registry,
        tracking_uri=args.tracking_uri,
        vertex_project=args.vertex_project,
        vertex_location=args.vertex_location,
        vertex_api_endpoint=args.vertex_api_endpoint,
        host=args.host,
        port=args.port,
        predict_route=args.predict_route,
        health_route=args.health_route,
        max_instances=args.max_instances,
        max_body_bytes=args.max_body_bytes,
        reload_interval_s=args.reload_interval_s,
        max_batch_rows=args.max_batch_rows,
        max_batches=args.max_batches,
        prediction_log=args.prediction_log,
        model_version=args.model_version,
        challenger_version=args.challenger_version,
        canary_percent=args.canary_percent,
        shadow=args.shadow,
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per line: what log collectors (Cloud Logging, Loki) parse."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "severity": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def _configure_logging() -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


def serve(
    settings: ServeSettings,
    graceful_shutdown_s: int = GRACEFUL_SHUTDOWN_S,
    access_log: bool = True,
) -> int:
    # Before anything imports Feast: importing feast.metrics sets PROMETHEUS_MULTIPROCESS_DIR,
    # which turns prometheus_client (when imported after it) into its multiprocess mode, where
    # the server's per-app registry would share values and could not clear the version gauge.
    import prometheus_client  # noqa: F401
    import uvicorn

    from portside.components.push.champion import open_registry
    from portside.components.serve.app import create_app
    from portside.components.serve.arms import Arms
    from portside.components.serve.holder import ModelHolder
    from portside.components.serve.prediction_log import PredictionLog

    _configure_logging()
    # TensorFlow's C++ info lines would break the one-JSON-object-per-line log.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    registry = open_registry(
        settings.registry,
        settings.model_name,
        settings.tracking_uri,
        settings.vertex_project,
        settings.vertex_location,
        settings.vertex_api_endpoint,
    )
    with tempfile.TemporaryDirectory(prefix="portside-serve-") as scratch:
        arms = Arms(
            ModelHolder(registry, settings.feature_repo, Path(scratch), settings.model_version),
            canary_percent=settings.canary_percent,
            shadow=settings.shadow,
        )
        if settings.challenger_version:
            arms.challenger = ModelHolder(
                registry, settings.feature_repo, Path(scratch), settings.challenger_version
            )
        prediction_log = PredictionLog(settings.prediction_log) if settings.prediction_log else None
        app = create_app(settings, arms, prediction_log)
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            timeout_graceful_shutdown=graceful_shutdown_s,
            access_log=access_log,
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m portside.components serve",
        description="Serve the registry's champion over HTTP (Vertex AI and OIP v2 routes).",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
    except ConfigurationError as error:  # flags that do not fit together
        parser.error(str(error).replace("_", "-"))
    return serve(settings, args.graceful_shutdown_s, not args.no_access_log)
