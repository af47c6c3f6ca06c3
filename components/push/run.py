"""The `push` component: publish a blessed model to MLflow or Vertex AI as the champion."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from components.common.model_io import SAVED_MODEL_DIR, FeatureSpec
from components.errors import ConfigurationError, GateFailed, InputDataError
from components.push.champion import expected_champion
from components.push.spec import DEFAULT_VERTEX_SERVING_IMAGE
from components.push.vertex import VertexTarget

PUSHED_FILE = "pushed.json"
BLESSING_FILE = "blessing.json"


@dataclass
class Pushed:
    registry: str
    model_name: str
    version: str
    content_hash: str
    reused: bool  # the same content was already registered
    previous_champion: str | None
    location: str  # MLflow artifact source or Vertex model resource name
    tracking_uri: str | None
    seconds: float


def run(
    model: str,
    evaluation: str,
    pushed: str,
    registry: str = "mlflow",
    model_name: str = "fraud_model",
    tracking_uri: str = "",
    vertex_project: str = "",
    vertex_location: str = "us-central1",
    vertex_artifact_uri: str = "",
    vertex_serving_image: str = DEFAULT_VERTEX_SERVING_IMAGE,
    vertex_api_endpoint: str = "",
) -> Pushed:
    """Refuse without a blessing for this exact model; otherwise publish it as the champion
    and write `pushed.json` into `pushed`."""
    from components.lineage import content_hash

    started = time.perf_counter()
    if registry not in ("mlflow", "vertex"):
        raise ConfigurationError(f"registry must be 'mlflow' or 'vertex', got {registry!r}")
    target = VertexTarget(
        vertex_project,
        vertex_location,
        vertex_artifact_uri,
        vertex_serving_image,
        vertex_api_endpoint,
    )
    if registry == "vertex":
        target.check()  # a misconfigured target fails before anything is read or sent
    check_model_dir(Path(model))
    digest = content_hash(model)
    blessing_path = Path(evaluation) / BLESSING_FILE
    blessing = require_blessing(Path(evaluation), digest)
    if registry == "mlflow":
        result = push_mlflow(model, model_name, tracking_uri, digest, blessing, blessing_path)
    else:
        result = push_vertex(target, model_name, digest, blessing, blessing_path)
    result.seconds = round(time.perf_counter() - started, 3)
    out = Path(pushed)
    out.mkdir(parents=True, exist_ok=True)
    (out / PUSHED_FILE).write_text(json.dumps(asdict(result), indent=2))
    return result


def check_model_dir(model: Path) -> None:
    FeatureSpec.load(model)  # names the directory when it is not a model directory
    if not (model / SAVED_MODEL_DIR / "saved_model.pb").is_file():
        raise InputDataError(f"{model / SAVED_MODEL_DIR}: no SavedModel (saved_model.pb)")


def require_blessing(evaluation: Path, digest: str) -> dict[str, Any]:
    """The evaluation's blessing, if it blesses this very model; GateFailed otherwise."""
    path = evaluation / BLESSING_FILE
    if not path.is_file():
        raise InputDataError(f"{path}: not found; push needs the evaluate component's output")
    try:
        blessing = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputDataError(f"{path}: not valid JSON ({error})") from error
    if blessing.get("blessed") is not True:
        reasons = blessing.get("reasons") or ["no reason recorded"]
        first = next((r for r in reasons if r.startswith("FAIL")), reasons[0])
        raise GateFailed(f"not blessed: {first}")
    blessed_hash = blessing.get("model_content_hash")
    if blessed_hash != digest:
        raise GateFailed(
            f"not blessed: {path} blesses model content {blessed_hash}, "
            f"but the model to push has content {digest}"
        )
    return blessing


def push_mlflow(
    model: str,
    model_name: str,
    tracking_uri: str,
    digest: str,
    blessing: dict[str, Any],
    blessing_path: Path,
) -> Pushed:
    from components.push.registry import Registry

    registry = Registry(tracking_uri, model_name)
    expected = expected_champion(blessing, blessing_path, registry)
    published = registry.publish(model, digest, expected)  # only ever a complete version
    return Pushed(
        registry="mlflow",
        model_name=model_name,
        version=published.version,
        content_hash=digest,
        reused=published.reused,
        previous_champion=published.previous,
        location=published.source,
        tracking_uri=registry.tracking_uri,
        seconds=0.0,
    )


def push_vertex(
    target: VertexTarget,
    model_name: str,
    digest: str,
    blessing: dict[str, Any],
    blessing_path: Path,
) -> Pushed:
    from components.push.vertex import VertexRegistry

    registry = VertexRegistry(target.project, target.location, target.api_endpoint, model_name)
    expected = expected_champion(blessing, blessing_path, registry)
    uploaded = registry.publish(target, digest, expected)
    return Pushed(
        registry="vertex",
        model_name=model_name,
        version=uploaded.version,
        content_hash=digest,
        reused=uploaded.reused,
        previous_champion=uploaded.previous,
        location=uploaded.resource_name,
        tracking_uri=None,
        seconds=0.0,
    )
