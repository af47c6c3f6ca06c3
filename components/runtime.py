"""Runs a component with lineage and content-addressed caching; every runtime goes through here.

A run's cache key is the hash of: the component name, the source of the whole `components`
package, the interpreter and installed distributions, the content hash of every input and the
parameters (resolved where a parameter says so). On a hit the outputs are restored from the
cache, and checked against the hashes recorded when they were stored, without importing the
implementation (so no TensorFlow, GX or Feast import). Every run, hit or not, writes
`run_manifest.json` into each output directory.

Outputs are directories the run owns: new, empty, or written by an earlier run of the same
component (its run manifest says so). Anything else is refused before anything runs, so a
mistyped path never loses someone's files. An owned directory is emptied and marked with this
run's manifest (status "running") before the run, so it holds exactly what this run wrote, and a
retry after a crash still owns it.

A cache entry is `<cache_dir>/<component>/<key>/`, its run manifest written last. It is staged
under a temporary name (`<key>.tmp-<host>-<pid>`) and renamed into place; an entry being
replaced is first renamed away (`<key>.old-<host>-<pid>`), so no reader sees half an entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from portside.components.errors import ConfigurationError, PortsideError
from portside.components.lineage import RUN_MANIFEST_FILE, CodeVersion, code_version, content_hash
from portside.components.spec import ComponentSpec

# A cache entry's folder name: the key, or a temporary name (legacy staging: `<key>.tmp<pid>`).
ENTRY_NAME = re.compile(
    r"^(?P<key>[0-9a-f]{64})"
    r"(?:\.(?P<purpose>tmp|old)-(?P<host>.+)-(?P<pid>\d+)|\.tmp(?P<legacy_pid>\d+))?$"
)


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


def _keyed_parameters(spec: ComponentSpec, parameters: dict) -> dict:
    """Parameters as the key sees them: file contents, resolved values."""
    keyed = dict(parameters)
    for param in spec.parameters:
        if param.resolve is not None:
            keyed[param.name] = param.resolved(parameters.get(param.name, param.default))
        path = Path(str(parameters.get(param.name, "")))
        if param.file and path.is_file():
            keyed[param.name] = {"path": str(path), "sha256": content_hash(path)}
    return keyed


def cache_key(spec: ComponentSpec, inputs: dict, parameters: dict, code: CodeVersion) -> str:
    payload = {
        "component": spec.name,
        "code": code.source_hash,
        "environment": code.environment_hash,
        "inputs": {name: info["sha256"] for name, info in inputs.items()},
        "parameters": _keyed_parameters(spec, parameters),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def cacheable(spec: ComponentSpec, parameters: dict) -> bool:
    """Whether this run may use the cache: the component allows it and no clock is involved."""
    clock = [p.name for p in spec.parameters if p.now_if_empty and not parameters.get(p.name)]
    return spec.cacheable and not clock


def temporary_path(entry: Path, purpose: str) -> Path:
    """Where this process stages (`tmp`) or discards (`old`) cache entry `entry`."""
    return entry.with_name(f"{entry.name}.{purpose}-{socket.gethostname()}-{os.getpid()}")


def execute(
    spec: ComponentSpec,
    arguments: dict[str, Any],
    cache_dir: str | Path | None = None,
) -> RunManifest:
    """Run `spec` with `arguments` (inputs, outputs and parameters by name).

    `cache_dir=None` disables caching for this run. Raises ConfigurationError, before anything
    runs, for an output directory the run does not own; raises what the component raises,
    after writing a manifest with the failure into the output directories.
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
    outputs = {name: Path(arguments[name]) for name in output_names}
    _check_owned(spec, outputs, cache_dir)
    code = code_version()
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
    use_cache = cache_dir is not None and cacheable(spec, parameters)
    entry = Path(cache_dir) / spec.name / key if use_cache else None

    _claim(outputs, manifest)
    cached = _lookup(spec, entry, parameters)
    restored = None if cached is None else _restore(entry, outputs, cached)
    if restored is not None:
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
    _finish(manifest, outputs, started, restored)
    if entry is not None and manifest.status == "succeeded":
        _store(entry, outputs, manifest)
    return manifest


def _check_owned(
    spec: ComponentSpec, outputs: dict[str, Path], cache_dir: str | Path | None
) -> None:
    """Refuse an output path that is not a directory this run may empty and write."""
    cache = Path(cache_dir).resolve() if cache_dir is not None else None
    for name, path in outputs.items():
        if cache is not None and path.resolve().is_relative_to(cache):
            why = f"inside the cache {cache}"
        elif not path.exists() and not path.is_symlink():
            continue
        elif not path.is_dir():
            why = "not a directory"
        elif not any(path.iterdir()) or _written_by(path, spec.name):
            continue
        else:
            why = f"not empty and holds no {RUN_MANIFEST_FILE} of an earlier {spec.name} run"
        raise ConfigurationError(
            f"{spec.name}: output {name!r} is {path}, which is {why}; refusing to write there. "
            "Pass a new or empty directory."
        )


def _written_by(directory: Path, component: str) -> bool:
    try:
        written = json.loads((directory / RUN_MANIFEST_FILE).read_text())
    except (OSError, ValueError):
        return False
    return isinstance(written, dict) and written.get("component") == component


def _claim(outputs: dict[str, Path], manifest: RunManifest) -> None:
    """Empty the owned output directories and mark them with this run's (running) manifest, so
    that a retry after a crash anywhere from here on still finds them owned."""
    text = json.dumps(asdict(manifest), indent=2, default=str)
    for path in outputs.values():
        path.mkdir(parents=True, exist_ok=True)
        _empty(path)
        _write_manifest(path, text)


def _write_manifest(directory: Path, text: str) -> None:
    """Replace the run manifest in one step: a crash never leaves half of one (or none)."""
    partial = directory / f"{RUN_MANIFEST_FILE}.{os.getpid()}.partial"
    partial.write_text(text)
    partial.replace(directory / RUN_MANIFEST_FILE)


def _empty(directory: Path) -> None:
    """Remove what an owned output directory holds but its run manifest (the mark of
    ownership, replaced next), keeping the directory itself (it may be a mount point)."""
    for child in directory.iterdir():
        if child.name == RUN_MANIFEST_FILE:
            continue
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child)
        else:
            child.unlink()


def _lookup(spec: ComponentSpec, entry: Path | None, parameters: dict) -> dict | None:
    """The cached run manifest, if there is one and its result still holds."""
    if entry is None or not (entry / RUN_MANIFEST_FILE).is_file():
        return None
    cached = json.loads((entry / RUN_MANIFEST_FILE).read_text())
    return cached if spec.still_valid(parameters, cached.get("result")) else None


def _output_hashes(outputs: dict[str, Path]) -> dict[str, dict[str, str]]:
    return {
        name: {"path": str(path.resolve()), "sha256": content_hash(path)}
        for name, path in outputs.items()
        if path.exists()
    }


def _finish(
    manifest: RunManifest,
    outputs: dict[str, Path],
    started: float,
    hashes: dict[str, dict[str, str]] | None = None,
) -> None:
    manifest.outputs = _output_hashes(outputs) if hashes is None else hashes
    manifest.finished_at = _now()
    manifest.seconds = round(time.perf_counter() - started, 3)
    text = json.dumps(asdict(manifest), indent=2, default=str)
    for path in outputs.values():
        if not path.exists() and manifest.status in ("failed", "gate_failed"):
            path.mkdir(parents=True)  # outputs are directories: the failure is recorded there too
        if path.is_dir():
            _write_manifest(path, text)


def _copy(source: Path, target: Path) -> None:
    """Copy an output without its run manifest: the target's own is written separately."""
    if source.is_dir():

        def manifest(directory: str, names: list[str]) -> list[str]:
            return [RUN_MANIFEST_FILE] if Path(directory) == source else []

        shutil.copytree(source, target, ignore=manifest, dirs_exist_ok=True)
    elif source.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


def _store(entry: Path, outputs: dict[str, Path], manifest: RunManifest) -> None:
    """Copy outputs into the cache; the manifest goes last so a partial entry is never used."""
    staging = temporary_path(entry, "tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    for name, path in outputs.items():
        _copy(path, staging / name)
    (staging / RUN_MANIFEST_FILE).write_text(json.dumps(asdict(manifest), default=str))
    discard_entry(entry)  # an entry whose result no longer held
    try:
        staging.rename(entry)
    except OSError:  # another process stored this key meanwhile: keep theirs
        shutil.rmtree(staging, ignore_errors=True)


def discard_entry(entry: Path) -> None:
    """Delete a cache entry, first renaming it so that no reader sees it half deleted."""
    old = temporary_path(entry, "old")
    try:
        entry.rename(old)
    except OSError:  # not there (or already moved by another process)
        return
    shutil.rmtree(old, ignore_errors=True)


def _restore(
    entry: Path, outputs: dict[str, Path], cached: dict
) -> dict[str, dict[str, str]] | None:
    """Copy the cached outputs into the (empty) output directories; their hashes if what
    arrived is what was stored. Otherwise (an entry deleted or edited under us) None, with the
    outputs emptied again: the component must run."""
    for name, path in outputs.items():
        _copy(entry / name, path)
    stored = {name: info["sha256"] for name, info in (cached.get("outputs") or {}).items()}
    hashes = _output_hashes(outputs)
    if {name: info["sha256"] for name, info in hashes.items()} != stored:
        for path in outputs.values():
            _empty(path)
        return None
    # The entry's age counts from its last use, so gc evicts the least used; a read-only
    # cache still serves hits.
    with contextlib.suppress(OSError):
        os.utime(entry)
    return hashes
