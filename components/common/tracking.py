"""Experiment tracking and model registry location: MLflow, embedded by default.

The default tracking URI is a SQLite file under the data folder, so `mlflow ui
--backend-store-uri sqlite:///data/mlflow/mlflow.db` shows every run; any remote MLflow server
works by passing its URI instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

DEFAULT_EXPERIMENT = "portside-training"


def default_tracking_uri(data_dir: str | Path = "data") -> str:
    database = (Path(data_dir) / "mlflow" / "mlflow.db").resolve()
    return f"sqlite:///{database}"


def resolve_tracking_uri(tracking_uri: str) -> str:
    """An empty URI means the embedded default; a bare path means a SQLite file there."""
    if not tracking_uri:
        return default_tracking_uri()
    if "://" not in tracking_uri:
        return f"sqlite:///{Path(tracking_uri).resolve()}"
    return tracking_uri


def _experiment_id(client: Any, name: str, tracking_uri: str) -> str:
    experiment = client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    location = None
    if tracking_uri.startswith("sqlite:///"):
        # Keep artifacts next to the database instead of ./mlruns of whatever cwd.
        location = (Path(tracking_uri.removeprefix("sqlite:///")).parent / "artifacts").as_uri()
    return client.create_experiment(name, artifact_location=location)


def log_run(
    tracking_uri: str,
    run_name: str,
    params: dict[str, Any],
    metrics: dict[str, float],
    artifact_dir: str | Path | None = None,
    tags: dict[str, str] | None = None,
    experiment: str = DEFAULT_EXPERIMENT,
) -> str:
    """Log one finished component run to MLflow; return its run id."""
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    run = client.create_run(_experiment_id(client, experiment, uri), run_name=run_name, tags=tags)
    run_id = run.info.run_id
    for key, value in params.items():
        client.log_param(run_id, key, value)
    for key, value in metrics.items():
        client.log_metric(run_id, key, float(value))
    if artifact_dir is not None:
        client.log_artifacts(run_id, str(artifact_dir))
    client.set_terminated(run_id)
    return run_id
