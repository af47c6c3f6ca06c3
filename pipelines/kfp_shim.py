"""What a KFP task runs inside the project image: the component through the shared runtime,
then its files published as KFP artifacts the Vertex AI / Kubeflow UI can show.

Imported only inside a running task; light at import time.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.registry import get_spec
from components.runtime import execute


def run_task(
    name: str,
    paths: dict[str, str],
    parameters: dict[str, Any],
    ui_artifacts: dict[str, Any],
    cache_dir: str,
) -> tuple[Any, ...] | None:
    """Run component `name`; return its declared scalar results in declaration order."""
    spec = get_spec(name)
    manifest = execute(spec, {**paths, **parameters}, cache_dir=cache_dir or None)
    key = manifest.cache_key[:12]
    print(f"{name}: {manifest.status} in {manifest.seconds:.2f} s (cache key {key})")
    for output_name, artifact in ui_artifacts.items():
        _publish(output_name, artifact, paths)
    if not spec.returns:
        return None
    result = manifest.result or {}
    return tuple(result[r.name] for r in spec.returns)


def _publish(output_name: str, artifact: Any, paths: dict[str, str]) -> None:
    from pipelines.kfp_components import UI_OUTPUTS

    ui = next(u for outputs in UI_OUTPUTS.values() for u in outputs if u.name == output_name)
    source = Path(paths[ui.source_output]) / ui.source_file
    if not source.is_file():
        print(f"{output_name}: {source} not found; nothing to show")
        return
    if ui.kfp_type == "HTML":
        Path(artifact.path).write_text(source.read_text())
        return
    values = json.loads(source.read_text())
    if ui.kfp_type == "Metrics":
        for key, value in values.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                artifact.log_metric(key, value)
    elif ui.kfp_type == "ClassificationMetrics":
        curve = values.get("roc_curve") or {}
        if curve:
            artifact.log_roc_curve(curve["fpr"], curve["tpr"], curve["thresholds"])
