"""What the server needs to know: where features and the champion come from, where it listens,
and its limits. Vertex AI tells a custom container its port and routes through AIP_* variables;
they are the defaults here, so the same image runs there, on KServe and locally."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from portside.components.errors import ConfigurationError
from portside.components.push.champion import CHAMPION

DEFAULT_PORT = 8080
DEFAULT_PREDICT_ROUTE = "/predict"
DEFAULT_HEALTH_ROUTE = "/health"
# Vertex AI online prediction refuses bodies over 1.5 MB; a larger one is a client error here.
DEFAULT_MAX_BODY_BYTES = 1_500_000
DEFAULT_MAX_INSTANCES = 1_000
DEFAULT_RELOAD_INTERVAL_S = 30.0
# Concurrent requests are scored together (components.serve.batching), up to this many rows.
DEFAULT_MAX_BATCH_ROWS = 1_000
DEFAULT_MAX_BATCHES = 1


@dataclass(frozen=True)
class ServeSettings:
    feature_repo: str
    model_name: str
    registry: str = "mlflow"  # or "vertex", as the production profile says
    tracking_uri: str = ""  # MLflow; "" is the project's data/mlflow
    vertex_project: str = ""
    vertex_location: str = ""
    vertex_api_endpoint: str = ""
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    predict_route: str = DEFAULT_PREDICT_ROUTE
    health_route: str = DEFAULT_HEALTH_ROUTE
    max_instances: int = DEFAULT_MAX_INSTANCES
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    reload_interval_s: float = DEFAULT_RELOAD_INTERVAL_S  # how often the champion is checked
    max_batch_rows: int = DEFAULT_MAX_BATCH_ROWS  # rows scored in one model call
    max_batches: int = DEFAULT_MAX_BATCHES  # batches scored at the same time
    prediction_log: str = ""  # folder of the prediction log (Parquet by date); "" is off
    model_version: str = CHAMPION  # or a version number: pin it (no hot reload)
    challenger_version: str = ""  # a version scored beside the champion ("" is none)
    canary_percent: float = 0.0  # share of requests the challenger answers
    shadow: bool = False  # the challenger scores every request, logged, never returned

    def __post_init__(self) -> None:
        problem = self._challenger_problem()
        if problem:
            raise ConfigurationError(problem)

    def _challenger_problem(self) -> str | None:
        if not 0 <= self.canary_percent <= 100:
            return f"canary_percent: {self.canary_percent} is not between 0 and 100"
        if not self.challenger_version:
            if self.canary_percent or self.shadow:
                return "canary_percent and shadow need a challenger_version"
            return None
        if self.shadow == bool(self.canary_percent):
            return "a challenger_version needs either canary_percent (above 0) or shadow"
        if self.shadow and not self.prediction_log:
            return "shadow scores are only written to the prediction log: set prediction_log"
        if self.challenger_version == self.model_version:
            return f"challenger_version {self.challenger_version} is the served version"
        return None


def vertex_defaults(environ: Mapping[str, str] | None = None) -> dict[str, object]:
    """Port and routes from Vertex AI's AIP_HTTP_PORT, AIP_PREDICT_ROUTE, AIP_HEALTH_ROUTE."""
    env = os.environ if environ is None else environ
    return {
        "port": int(env.get("AIP_HTTP_PORT") or DEFAULT_PORT),
        "predict_route": env.get("AIP_PREDICT_ROUTE") or DEFAULT_PREDICT_ROUTE,
        "health_route": env.get("AIP_HEALTH_ROUTE") or DEFAULT_HEALTH_ROUTE,
    }
