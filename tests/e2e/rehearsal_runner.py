"""Run a compiled pipeline (KFP IR YAML) with kfp.local as a cluster would run its containers.

Started with the image environment's Python (tests/image_env.py), so kfp, the orchestration
and every task import the project from the built wheel only. kfp.local's SubprocessRunner
runs each task as a subprocess of this Python but, unlike a cluster, in the caller's working
directory and environment, ignoring the container `env` compiled into the IR. Two patches
close that gap: every task starts in a new, empty working directory, with the IR's env of its
executor. What a task leaves in its working directory is recorded (a container's disk is
gone after the task).

    python rehearsal_runner.py TEMPLATE PIPELINE_ROOT WORK_DIR REPORT NAME=JSON_VALUE...
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

_current = threading.local()
_tasks: list[dict[str, Any]] = []


def _patch_kfp_local(work_dir: Path) -> None:
    from kfp.local import subprocess_task_handler, task_dispatcher

    run_task = task_dispatcher.run_single_task_implementation

    def run_with_env(*args: Any, **kwargs: Any) -> Any:
        env = {e.name: e.value for e in kwargs["executor_spec"].container.env}
        _current.task = {"component": kwargs["component_name"], "env": env}
        return run_task(*args, **kwargs)

    def run_in_empty_dir(full_command: list[str]) -> int:
        task = _current.task
        cwd = work_dir / f"{len(_tasks):02d}-{task['component']}"
        cwd.mkdir(parents=True)
        done = subprocess.run(
            full_command,
            cwd=cwd,
            env={**os.environ, **task["env"]},
            stdout=sys.stdout,
            stderr=subprocess.STDOUT,
        )
        left = sorted(str(p.relative_to(cwd)) for p in cwd.rglob("*"))
        _tasks.append({**task, "cwd": str(cwd), "left_in_cwd": left, "returncode": done.returncode})
        return done.returncode

    task_dispatcher.run_single_task_implementation = run_with_env
    subprocess_task_handler.run_local_subprocess = run_in_empty_dir


def main(template: str, pipeline_root: str, work_dir: str, report: str, *pairs: str) -> int:
    from kfp import components as kfp_components
    from kfp import local

    from portside.pipelines.local_run import fix_kfp_local_conditions

    _patch_kfp_local(Path(work_dir))
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=pipeline_root)
    fix_kfp_local_conditions()
    pipeline = kfp_components.load_component_from_file(template)
    arguments = {k: json.loads(v) for k, _, v in (p.partition("=") for p in pairs)}
    error = None
    try:
        pipeline(**arguments)
    except Exception as failure:  # kfp.local raises naming the failed task
        error = f"{type(failure).__name__}: {failure}"
    import portside.components as components

    Path(report).write_text(
        json.dumps({"error": error, "tasks": _tasks, "project_from": components.__file__}, indent=2)
    )
    return 0 if error is None else 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
