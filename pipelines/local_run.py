"""Run the training pipeline on this machine with kfp.local (no Docker, no cluster).

Each task runs as a subprocess of this Python (SubprocessRunner, use_venv=False: the project
environment already holds everything). Caching is Portside's content-addressed cache; a
pipeline-level lineage record (`pipeline_run.json`) gathers every task's run manifest.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from components.errors import ConfigurationError
from components.lineage import RUN_MANIFEST_FILE, code_version

PIPELINE_RUN_FILE = "pipeline_run.json"


@dataclass
class PipelineRun:
    pipeline: str
    status: str  # succeeded | failed
    run_dir: str
    parameters: dict[str, Any]
    started_at: str
    seconds: float
    code_version: dict[str, Any]
    tasks: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def run_local(
    parameters: dict[str, Any],
    pipeline_root: str | Path = "data/pipeline_runs",
    cache_dir: str | Path | None = "data/cache",
    pipeline: Any = None,
) -> PipelineRun:
    """Run the whole pipeline (default: `create_pipeline()` on embedded defaults); write and
    return its lineage record."""
    from kfp import local

    from pipelines.training_pipeline import PIPELINE_NAME, create_pipeline

    root = Path(pipeline_root).resolve()
    root.mkdir(parents=True, exist_ok=True)
    before = set(root.iterdir())
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(root))
    fix_kfp_local_conditions()
    pipeline = pipeline or create_pipeline()
    arguments = {
        **parameters,
        "portside_cache_dir": str(Path(cache_dir).resolve()) if cache_dir else "",
    }
    started, started_at = time.perf_counter(), datetime.now(timezone.utc).isoformat()
    error = None
    try:
        pipeline(**arguments)
    except Exception as failure:  # kfp.local raises RuntimeError naming the failed task
        error = str(failure).strip().splitlines()[-1] if str(failure).strip() else repr(failure)
    new_dirs = sorted(set(root.iterdir()) - before, key=lambda p: p.stat().st_mtime)
    if not new_dirs:  # kfp.local stopped before it started a run (e.g. a bad parameter)
        raise ConfigurationError(f"the pipeline did not start: {error}")
    run_dir = new_dirs[-1]
    tasks = _task_manifests(run_dir)
    failed = [t for t in tasks if t["status"] in ("failed", "gate_failed")]
    if error and failed:  # kfp.local's message does not say which task failed or why
        error = "; ".join(f"{t['component']} {t['status']}: {t['error']}" for t in failed)
    run = PipelineRun(
        pipeline=PIPELINE_NAME,
        status="failed" if error else "succeeded",
        run_dir=str(run_dir),
        parameters=arguments,
        started_at=started_at,
        seconds=round(time.perf_counter() - started, 3),
        code_version=asdict(code_version()),
        tasks=tasks,
        error=error,
    )
    (run_dir / PIPELINE_RUN_FILE).write_text(json.dumps(asdict(run), indent=2, default=str))
    return run


def pipeline_parameter_definitions(pipeline: Any) -> dict[str, dict[str, Any]]:
    """The pipeline's parameters as the compiled IR declares them (parameterType, default)."""
    from google.protobuf import json_format

    root = json_format.MessageToDict(pipeline.pipeline_spec.root)
    return dict(root["inputDefinitions"]["parameters"])


def fix_kfp_local_conditions() -> None:
    """Let kfp.local evaluate the conditions KFP itself compiles.

    kfp 2.16's local orchestrator substitutes channel values into the compiled condition
    (`inputs.parameter_values['pipelinechannel--evaluate-Output'] == true`) and evals it as
    Python, which fails on the `inputs.parameter_values[...]` wrapper and on `true`, so every
    dsl.If branch is silently skipped. Rewrite the condition into the form it can evaluate.
    """
    from kfp.local.orchestrator import enhanced_dag_orchestrator as dag

    original = dag.ConditionEvaluator.evaluate_condition
    if getattr(original, "portside_fixed", False):
        return

    def evaluate_condition(condition: str, io_store: Any) -> bool:
        condition = re.sub(
            r"inputs\.parameter_values\['(pipelinechannel--[^']+)'\]", r"\1", condition
        )
        condition = re.sub(r"\btrue\b", "True", re.sub(r"\bfalse\b", "False", condition))
        return original(condition, io_store)

    evaluate_condition.portside_fixed = True  # type: ignore[attr-defined]
    dag.ConditionEvaluator.evaluate_condition = staticmethod(evaluate_condition)


def _task_manifests(run_dir: Path) -> list[dict[str, Any]]:
    """One entry per component run, from the run manifests the tasks wrote (deduplicated)."""
    seen: dict[str, dict[str, Any]] = {}
    for path in sorted(run_dir.rglob(RUN_MANIFEST_FILE)):
        manifest = json.loads(path.read_text())
        key = f"{manifest['component']}:{manifest['started_at']}"
        seen[key] = {
            "component": manifest["component"],
            "started_at": manifest["started_at"],
            "status": manifest["status"],
            "seconds": manifest["seconds"],
            "cache_key": manifest["cache_key"],
            "manifest": str(path),
            "error": manifest.get("error"),
        }
    return sorted(seen.values(), key=lambda t: t["started_at"])
