"""What a KFP task runs inside the project image: the component through the shared runtime,
then its files published as KFP artifacts the Vertex AI / Kubeflow UI can show.

Imported only inside a running task; light at import time.
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path
from typing import Any

from portside.components.registry import get_spec
from portside.components.runtime import execute


def run_task(
    name: str,
    paths: dict[str, str],
    parameters: dict[str, Any],
    ui_artifacts: dict[str, Any],
    cache_dir: str,
    uris: dict[str, str] | None = None,
) -> Any:
    """Run component `name`; return its declared scalar result(s): one value, or a tuple."""
    spec = get_spec(name)
    parameters = with_artifact_uris(name, parameters, uris or {})
    manifest = execute(spec, {**paths, **parameters}, cache_dir=cache_dir or None)
    print(summary_line(name, manifest.status, manifest.seconds, manifest.cache_key))
    for output_name, artifact in ui_artifacts.items():
        _publish(output_name, artifact, paths)
    if not spec.returns:
        return None
    result = manifest.result or {}
    values = tuple(result[r.name] for r in spec.returns)
    return values[0] if len(values) == 1 else values


def summary_line(name: str, status: str, seconds: float, cache_key: str) -> str:
    """The task's last line in its log, e.g. "train: cached in 0.04 s (cache key 3f2a...)"."""
    return f"{name}: {status} in {seconds:.2f} s (cache key {cache_key[:12]})"


def reports_cache_hit(log_text: str) -> bool:
    """Whether a task's log says it was served from Portside's cache (see summary_line)."""
    return re.search(r"^\S+: cached in \S+ s \(cache key", log_text, re.MULTILINE) is not None


def with_artifact_uris(
    name: str, parameters: dict[str, Any], uris: dict[str, str]
) -> dict[str, Any]:
    """Fill the empty parameters that default to an input artifact's URI (ARTIFACT_URI_DEFAULTS)."""
    from portside.pipelines.kfp_components import ARTIFACT_URI_DEFAULTS

    filled = dict(parameters)
    for default in ARTIFACT_URI_DEFAULTS.get(name, ()):
        key, value = default.when
        if not filled.get(default.parameter) and filled.get(key) == value:
            filled[default.parameter] = uris[default.artifact]
    return filled


def _publish(output_name: str, artifact: Any, paths: dict[str, str]) -> None:
    from portside.pipelines.kfp_components import UI_OUTPUTS

    ui = next(u for outputs in UI_OUTPUTS.values() for u in outputs if u.name == output_name)
    folder = Path(paths[ui.source_output])
    sources = sorted(folder.glob(ui.source_file))
    if not sources:
        print(f"{output_name}: no {ui.source_file} in {folder}; nothing to show")
        return
    if ui.kfp_type == "HTML":
        Path(artifact.path).write_text(_html(sources))
        return
    values = json.loads(sources[0].read_text())
    if ui.kfp_type == "Metrics":
        for key, value in _numbers(values):
            artifact.log_metric(key, value)
    elif ui.kfp_type == "ClassificationMetrics":
        curve = values.get("roc_curve") or values.get("model", {}).get("roc_curve")
        if curve:
            artifact.log_roc_curve(curve["fpr"], curve["tpr"], curve["thresholds"])


def _numbers(values: dict[str, Any], prefix: str = "") -> list[tuple[str, float]]:
    """Numeric leaves of nested JSON, as dotted names (model.roc_auc)."""
    found = []
    for key, value in values.items():
        if isinstance(value, dict):
            found += _numbers(value, f"{prefix}{key}.")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            found.append((prefix + key, value))
    return found


def _html(sources: list[Path]) -> str:
    """One HTML file: an HTML source as it is, or PNG plots embedded inline."""
    if len(sources) == 1 and sources[0].suffix == ".html":
        return sources[0].read_text()
    images = "".join(
        f'<figure><img src="data:image/png;base64,{base64.b64encode(p.read_bytes()).decode()}">'
        f"<figcaption>{p.stem}</figcaption></figure>"
        for p in sources
    )
    return f"<!doctype html><html><body>{images}</body></html>"
