"""The `push` component: publish a blessed model to MLflow or Vertex AI as the champion."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from portside.components.common.artifacts import (
    BLESSING_FILE,
    PUSHED_FILE,
    SAVED_MODEL_DIR,
    read_json_object,
)
from portside.components.common.model_io import FeatureSpec
from portside.components.errors import ConfigurationError, GateFailed, InputDataError
from portside.components.push.champion import expected_champion, open_registry
from portside.components.push.spec import DEFAULT_VERTEX_SERVING_IMAGE
from portside.components.push.vertex import VertexModelUpload


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
    model_name: str,
    registry: str = "mlflow",
    tracking_uri: str = "",
    vertex_project: str = "",
    vertex_location: str = "us-central1",
    vertex_artifact_uri: str = "",
    vertex_serving_image: str = DEFAULT_VERTEX_SERVING_IMAGE,
    vertex_api_endpoint: str = "",
) -> Pushed:
    """Refuse without a blessing for this exact model; otherwise publish it as the champion
    and write `pushed.json` into `pushed`."""
    from portside.components.lineage import content_hash

    started = time.perf_counter()
    if registry not in ("mlflow", "vertex"):
        raise ConfigurationError(f"registry must be 'mlflow' or 'vertex', got {registry!r}")
    upload = VertexModelUpload(
        vertex_project,
        vertex_location,
        vertex_artifact_uri,
        vertex_serving_image,
        vertex_api_endpoint,
    )
    if registry == "vertex":
        upload.check()  # a misconfigured upload fails before anything is read or sent
    check_model_dir(Path(model))
    digest = content_hash(model)
    blessing_path = Path(evaluation) / BLESSING_FILE
    blessing = require_blessing(Path(evaluation), digest)
    target = open_registry(
        registry, model_name, tracking_uri, vertex_project, vertex_location, vertex_api_endpoint
    )
    expected = expected_champion(blessing, blessing_path, target)
    if registry == "mlflow":
        published = target.publish(model, digest, expected)  # only ever a complete version
        location, tracking = published.source, target.tracking_uri
    else:
        published = target.publish(upload, digest, expected)
        location, tracking = published.resource_name, None
    result = Pushed(
        registry=registry,
        model_name=model_name,
        version=published.version,
        content_hash=digest,
        reused=published.reused,
        previous_champion=published.previous,
        location=location,
        tracking_uri=tracking,
        seconds=0.0,
    )
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
    blessing = read_json_object(path, "evaluate")
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
