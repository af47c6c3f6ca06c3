"""Runs a component with lineage and content-addressed caching; every runtime goes through here.

A run's cache key is the hash of: the component name, the components' source code, the content
hash of every input and the parameters. On a hit the outputs are restored from the cache
without importing the implementation (so no TensorFlow, GX or Feast import). Every run, hit or
not, writes `run_manifest.json` into each output directory.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from components.errors import PortsideError
from components.lineage import RUN_MANIFEST_FILE, CodeVersion, code_version, content_hash
from components.spec import ComponentSpec


@dataclass
class RunManifest:
    component: str
    status: str  # succeeded | cached | gate_failed | failed
    cache_key: str
    inputs: dict[str, dict[str, str]]
    parameters: dict[str, Any]
    outputs: dict[str, dict[str, str]]
    code_version: CodeVersion
    image: str | None
    host: str
    started_at: str
    finished_at: str = ""
    seconds: float = 0.0
    error: str | None = None
    result: Any = None
    cached_from: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def cache_key(spec: ComponentSpec, inputs: dict, parameters: dict, code: CodeVersion) -> str:
    keyed = dict(parameters)
    for param in spec.parameters:
        path = Path(str(parameters.get(param.name, "")))
        if param.file and path.is_file():
            keyed[param.name] = {"path": str(path), "sha256": content_hash(path)}
    payload = {
        "component": spec.name,
        "code": code.source_hash,
        "inputs": {name: info["sha256"] for name, info in inputs.items()},
        "parameters": keyed,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cacheable(spec: ComponentSpec, parameters: dict) -> bool:
    """Whether this run may use the cache: the component allows it and no clock is involved."""
    clock = [p.name for p in spec.parameters if p.now_if_empty and not parameters.get(p.name)]
    return spec.cacheable and not clock


def execute(
    spec: ComponentSpec,
    arguments: dict[str, Any],
    cache_dir: str | Path | None = None,
) -> RunManifest:
    """Run `spec` with `arguments` (inputs, outputs and parameters by name).

    `cache_dir=None` disables caching for this run. Raises what the component raises, after
    writing a manifest with the failure into the output directories.
    """
    started = time.perf_counter()
    input_names = [a.name for a in spec.inputs]
    output_names = [a.name for a in spec.outputs]
    parameters = {k: v for k, v in arguments.items() if k not in input_names + output_names}
    inputs = {}
    for name in input_names:
        path = Path(arguments[name])
        if not path.exists():
            raise PortsideError(f"{spec.name}: input {name!r} not found: {path}")
        inputs[name] = {"path": str(path.resolve()), "sha256": content_hash(path)}
    code = code_version(spec.name)
    key = cache_key(spec, inputs, parameters, code)
    manifest = RunManifest(
        component=spec.name,
        status="running",
        cache_key=key,
        inputs=inputs,
        parameters=parameters,
        outputs={},
        code_version=code,
        image=os.environ.get("PORTSIDE_IMAGE"),
        host=socket.gethostname(),
        started_at=_now(),
    )
    outputs = {name: Path(arguments[name]) for name in output_names}
    use_cache = cache_dir is not None and cacheable(spec, parameters)
    entry = Path(cache_dir) / spec.name / key if use_cache else None

    cached = _lookup(spec, entry, parameters)
    if cached is not None:
        _restore(entry, outputs)
        manifest.status, manifest.cached_from = "cached", str(entry)
        manifest.result = cached.get("result")
    else:
        try:
            result = spec.load()(**arguments)
        except Exception as error:
            manifest.status = "gate_failed" if getattr(error, "exit_code", 1) == 3 else "failed"
            manifest.error = f"{type(error).__name__}: {error}"
            _finish(manifest, outputs, started)
            raise
        manifest.status = "succeeded"
        manifest.result = asdict(result) if is_dataclass(result) else result
    _finish(manifest, outputs, started)
    if entry is not None and manifest.status == "succeeded":
        _store(entry, outputs, manifest)
    return manifest


def _lookup(spec: ComponentSpec, entry: Path | None, parameters: dict) -> dict | None:
    """The cached run manifest, if there is one and its result still holds."""
    if entry is None or not (entry / RUN_MANIFEST_FILE).is_file():
        return None
    cached = json.loads((entry / RUN_MANIFEST_FILE).read_text())
    return cached if spec.still_valid(parameters, cached.get("result")) else None


def _finish(manifest: RunManifest, outputs: dict[str, Path], started: float) -> None:
    manifest.outputs = {
        name: {"path": str(path.resolve()), "sha256": content_hash(path)}
        for name, path in outputs.items()
        if path.exists()
    }
    manifest.finished_at = _now()
    manifest.seconds = round(time.perf_counter() - started, 3)
    text = json.dumps(asdict(manifest), indent=2, default=str)
    for path in outputs.values():
        if not path.exists() and manifest.status in ("failed", "gate_failed"):
            path.mkdir(parents=True)  # outputs are directories: the failure is recorded there too
        if path.is_dir():
            (path / RUN_MANIFEST_FILE).write_text(text)


def _store(entry: Path, outputs: dict[str, Path], manifest: RunManifest) -> None:
    """Copy outputs into the cache; the manifest goes last so a partial entry is never used."""
    staging = entry.with_name(entry.name + f".tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, path in outputs.items():
        target = staging / name
        if path.is_dir():
            shutil.copytree(path, target)
        elif path.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
    (staging / RUN_MANIFEST_FILE).write_text(json.dumps(asdict(manifest), default=str))
    shutil.rmtree(entry, ignore_errors=True)
    staging.rename(entry)


def _restore(entry: Path, outputs: dict[str, Path]) -> None:
    for name, path in outputs.items():
        source = entry / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
        if source.is_dir():
            shutil.copytree(source, path)
        elif source.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, path)
