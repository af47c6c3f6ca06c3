"""The Airflow binding, generated from the component specs: one task per component.

A task's arguments are its spec's inputs, outputs and parameters, as Jinja templates rendered
from the DAG run's context, turned into the container entrypoint's command line (`python -m
portside.components <name> --<artifact> PATH ... --<param> VALUE ... --cache-dir D`), the
same in every runtime. Where it runs is the runner, read from the environment when a DAG file
is parsed (an environment variable costs nothing; no metadata-database access at parse):

- `PORTSIDE_AIRFLOW_RUNNER` = `local` (default): a subprocess of the entrypoint in the project
  environment (this interpreter), its output streamed to the task log, working directory the
  project (`PORTSIDE_PROJECT_DIR`, default this repository), so the DAG's relative default paths
  (`feature_repo`, `data/...`) mean what they mean for `portside run --local`;
  `kubernetes`: a KubernetesPodOperator with the project image (`pipelines.airflow_kubernetes`);
  `vertex`: the training DAG is one deferrable task that submits the compiled KFP pipeline
  (`Binding.pipeline_task`, `pipelines.airflow_vertex`). Those modules are imported only in
  their mode, so a local-mode parse never imports the Kubernetes provider or Google's client.
  A DAG file makes one `Binding` and builds its tasks with it: the production profile
  (kubernetes, vertex) is read and validated once per parse.
- `PORTSIDE_ARTIFACT_ROOT`: where each run's outputs go, `<root>/<dag_id>/<run_id>/<step>/...`
  (`Binding.artifact_path`); default `<project>/data/airflow_runs`; on Kubernetes the shared volume
  every pod mounts (default: the production profile's `kubernetes.artifact_root`).
- `PORTSIDE_CACHE_DIR`: Portside's content-addressed cache (`--cache-dir`); default
  `<project>/data/cache`, the one `portside run --local` uses (on Kubernetes
  `<artifact root>/cache`); `off` passes `--no-cache`.

Exit codes become task states in one place, `raise_for_exit`: 3 (a gate) fails the task
without retries (`AirflowFailException`; retrying a failed validation is pointless) unless the
spec says a gate failure means "nothing to do" (`ComponentSpec.on_gate_failed == "skip"`:
push of a model that was not blessed), then the task is skipped and the run stays green; 2 (a
usage error) fails without retries; anything else (1, a signal) is an error that Airflow
retries per the task's `retries`.

Each task returns (XCom `return_value`) its outputs, their run manifests, its status and result
as the run manifest records them (evaluate's `blessed`, push's `version`) and its reports
(validate's report.html, evaluate's plots: `pipelines.kfp_components.UI_OUTPUTS`, the files the
KFP binding shows in its UI too); a failed task pushes the same under the key `portside`. The
reports and the run manifest are also the task's extra links ("Report", "Plots", "Run
manifest"), computed by the worker when the task ends, whatever its state.

Time, never `now()`: a run's time is its data interval's end, or for a run without one (an
Asset-triggered run, a manual run without logical date) the time it was queued for
(`dag_run.run_after`); both are stored with the run, so a retry or a re-run sees the same
value. `run_end()` and `run_start()` are those templates; the training DAG gives features the
window `[run_end - training_window_days, run_end)` of the entity rows (`rows_from`,
`rows_until`) and validate `as_of = run_end`, so a backfill of a past interval trains on that
interval's rows, judged as of its end.
"""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
from airflow.sdk import BaseOperator, BaseOperatorLink, Param
from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException

from portside.components.errors import ConfigurationError
from portside.components.lineage import RUN_MANIFEST_FILE
from portside.components.registry import get_spec
from portside.components.spec import ComponentSpec, GatePolicy
from portside.pipelines.kfp_components import UI_OUTPUTS

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

    from portside.pipelines.profile import Profile
    from portside.pipelines.training_pipeline import PipelineDefaults

RUNNER_VARIABLE = "PORTSIDE_AIRFLOW_RUNNER"
ARTIFACT_ROOT_VARIABLE = "PORTSIDE_ARTIFACT_ROOT"
CACHE_DIR_VARIABLE = "PORTSIDE_CACHE_DIR"
PROJECT_DIR_VARIABLE = "PORTSIDE_PROJECT_DIR"
RUNNERS = ("local", "kubernetes", "vertex")
NO_CACHE = "off"
REPOSITORY = Path(__file__).resolve().parents[1]
GATE_FAILED, USAGE_ERROR = 3, 2
# The key under which a failed task still publishes what it wrote (a success returns it).
RESULT_KEY = "portside"
TAIL_LINES = 20  # of a command's output, kept as its result

# A run's end: its data interval's end, else the time it was queued for (asset-triggered and
# manual runs without a logical date have no data interval). Never the clock at render time.
RUN_END = "(dag_run.data_interval_end or dag_run.run_after)"


@dataclass(frozen=True)
class Binding:
    """Where tasks run and write, read once from the environment of the process that parses
    the DAG file: a DAG file makes one (`Binding.from_environment()`) and builds its tasks
    with it, so the production profile is read and validated once per parse."""

    runner: str
    project_dir: str
    artifact_root: str
    cache_dir: str | None  # None: --no-cache
    profile: Profile | None = None  # kubernetes and vertex: the production profile

    @classmethod
    def from_environment(
        cls, environ: Mapping[str, str] | None = None, runner: str | None = None
    ) -> Binding:
        """Local: run folders and cache under the project's data/. Kubernetes: both on the
        volume every pod mounts (the profile's `kubernetes.artifact_root`). Kubernetes and
        vertex load the profile PORTSIDE_PROFILE names (a bad one is an import error of the
        DAG file, naming the field). `runner` wins over $PORTSIDE_AIRFLOW_RUNNER."""
        env = os.environ if environ is None else environ
        runner = runner_name(runner or env.get(RUNNER_VARIABLE) or "local")
        project = env.get(PROJECT_DIR_VARIABLE) or str(REPOSITORY)
        profile = None
        if runner != "local":
            from portside.pipelines.profile import load_profile, profile_path

            profile = load_profile(profile_path(env), env)
        if runner == "kubernetes":
            root = env.get(ARTIFACT_ROOT_VARIABLE) or profile.kubernetes.artifact_root
            cache = env.get(CACHE_DIR_VARIABLE) or f"{root.rstrip('/')}/cache"
        else:
            root = env.get(ARTIFACT_ROOT_VARIABLE) or str(Path(project) / "data" / "airflow_runs")
            cache = env.get(CACHE_DIR_VARIABLE) or str(Path(project) / "data" / "cache")
        return cls(
            runner=runner,
            project_dir=project,
            artifact_root=root.rstrip("/"),
            cache_dir=None if cache == NO_CACHE else cache,
            profile=profile,
        )

    def pipeline_defaults(self) -> PipelineDefaults:
        """The DAG params' defaults: the embedded ones (the project's files, data/mlflow) for
        the local runner; where tasks run in the image (kubernetes, vertex), the production
        profile's: the image's feature repo and suite, the shared MLflow server."""
        from portside.pipelines.training_pipeline import PipelineDefaults

        return PipelineDefaults() if self.profile is None else self.profile.pipeline_defaults()

    def artifact_path(self, dag_run_relative: str) -> str:
        """`<artifact root>/<dag_id>/<run_id>/<dag_run_relative>`, templated: every run (and
        every try of it) writes into its own folder."""
        run_folder = f"{self.artifact_root}/{{{{ dag.dag_id }}}}/{{{{ run_id }}}}"
        return f"{run_folder}/{dag_run_relative.lstrip('/')}"

    def component_task(
        self,
        name: str,
        *,
        task_id: str | None = None,
        inputs: dict[str, str],
        outputs: dict[str, str],
        parameters: dict[str, object],
        **operator_kwargs: Any,
    ) -> BaseOperator:
        """The task that runs component `name`; values may be Jinja templates."""
        spec = get_spec(name)
        arguments = component_arguments(spec, inputs, outputs, parameters, self.cache_dir)
        task_id = task_id or name
        operator_kwargs.setdefault("doc_md", spec.doc)
        if self.runner == "local":
            return PortsideOperator(
                task_id=task_id,
                argv=[sys.executable, "-m", "portside.components", *arguments],
                cwd=self.project_dir,
                on_gate_failed=spec.on_gate_failed,
                outputs=dict(outputs),
                reports=component_reports(spec),
                **operator_kwargs,
            )
        if self.runner == "kubernetes":
            from portside.pipelines.airflow_kubernetes import kubernetes_operator

            return kubernetes_operator(
                task_id,
                ["python", "-m", "portside.components"],
                arguments,
                on_gate_failed=spec.on_gate_failed,
                profile=self.profile,
                outputs=dict(outputs),
                reports=component_reports(spec),
                **operator_kwargs,
            )
        raise ConfigurationError(
            f"{task_id}: in the vertex runner the whole pipeline is one Vertex AI job "
            "(pipeline_task), not a task per component"
        )

    def command_task(self, task_id: str, argv: list[str], **operator_kwargs: Any) -> BaseOperator:
        """A `portside ...` command that is not a component (e.g. materialization); `argv`
        starts with "portside". Under the vertex runner it runs locally: Vertex AI runs the
        pipeline, the light commands around it run on the Airflow worker."""
        if not argv or argv[0] != "portside":
            raise ConfigurationError(f"{task_id}: a command task runs `portside ...`, got {argv!r}")
        if self.runner == "kubernetes":
            from portside.pipelines.airflow_kubernetes import kubernetes_operator

            return kubernetes_operator(
                task_id,
                ["portside"],
                list(argv[1:]),
                on_gate_failed="fail",
                profile=self.profile,
                **operator_kwargs,
            )
        return PortsideOperator(
            task_id=task_id,
            argv=[sys.executable, "-m", "portside.pipelines.cli", *argv[1:]],
            cwd=self.project_dir,
            on_gate_failed="fail",
            **operator_kwargs,
        )

    def pipeline_task(
        self, task_id: str, parameter_values: dict[str, object], **operator_kwargs: Any
    ) -> BaseOperator:
        """The whole training pipeline as one deferrable Vertex AI Pipelines job (vertex
        runner)."""
        if self.runner != "vertex":
            raise ConfigurationError(
                f"{task_id}: a Vertex AI pipeline task needs {RUNNER_VARIABLE}=vertex "
                f"(the runner is {self.runner})"
            )
        from portside.pipelines.airflow_vertex import VertexPipelineOperator

        return VertexPipelineOperator(
            task_id=task_id, parameter_values=parameter_values, **operator_kwargs
        )


def runner_name(runner: str | None = None) -> str:
    """The runner to use: `runner` if given, else $PORTSIDE_AIRFLOW_RUNNER, else local."""
    name = runner or os.environ.get(RUNNER_VARIABLE) or "local"
    if name not in RUNNERS:
        raise ConfigurationError(
            f"{RUNNER_VARIABLE}={name!r}: the runner is one of {', '.join(RUNNERS)}"
        )
    return name


# -- DAG params -----------------------------------------------------------------------------


def entity_row_params(rows_description: str) -> dict[str, Param]:
    """The trigger form's entity rows and the worked example's feature service and label: the
    params every DAG that builds features shows."""
    return {
        "entity_rows": Param(
            "data/sources/transactions.parquet", type="string", description=rows_description
        ),
        "feature_service": Param(
            "fraud_model_v1", type="string", description="Feast FeatureService"
        ),
        "label_column": Param("is_fraud", type="string", description="Label column of the rows"),
    }


# -- templates ------------------------------------------------------------------------------


def run_end() -> str:
    """The run's end as ISO text: its data interval's end, else when it was queued for."""
    return "{{ " + RUN_END + ".isoformat() }}"


def run_start(length: timedelta | None = None, days_param: str | None = None) -> str:
    """ISO text of the run's start: its data interval's start; else (no data interval) run_end
    minus `length`. With `days_param`, run_end minus that DAG param in days, and empty (no
    bound) when the param is 0."""
    if days_param is not None:
        days = f"params.{days_param}"
        return (
            "{{ (" + RUN_END + f" - macros.timedelta(days={days})).isoformat() "
            f"if {days} else '' }}}}"
        )
    if length is None:
        raise ValueError("run_start needs a length or a days_param")
    seconds = int(length.total_seconds())
    return (
        "{{ (dag_run.data_interval_start or "
        f"dag_run.run_after - macros.timedelta(seconds={seconds})).isoformat() }}}}"
    )


# -- the exit-code policy ---------------------------------------------------------------------


def raise_for_exit(returncode: int, reason: str, on_gate_failed: GatePolicy = "fail") -> None:
    """Map an entrypoint's exit code to the task's state (the one place this is decided).

    0: success; 3 (gate failed): fail without retries, or skip when the spec says a gate
    failure means nothing to do; 2 (usage): fail without retries; else: an error Airflow
    retries per `retries`.
    """
    if returncode == 0:
        return
    if returncode == GATE_FAILED:
        if on_gate_failed == "skip":
            raise AirflowSkipException(f"nothing to do: {reason}")
        raise AirflowFailException(f"gate failed (not retried): {reason}")
    if returncode == USAGE_ERROR:
        raise AirflowFailException(f"usage error (not retried): {reason}")
    raise AirflowException(f"exit code {returncode}: {reason}")


# -- command lines ----------------------------------------------------------------------------


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _text(value: object) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def component_arguments(
    spec: ComponentSpec,
    inputs: Mapping[str, str],
    outputs: Mapping[str, str],
    parameters: Mapping[str, object],
    cache_dir: str | None,
) -> list[str]:
    """`<name> --<input> V ... --<output> V ... --<param> V ... --cache-dir D`, checked
    against the spec: every artifact given, no unknown name, every required parameter."""
    declared = {
        "input": [a.name for a in spec.inputs],
        "output": [a.name for a in spec.outputs],
        "parameter": [p.name for p in spec.parameters],
    }
    for kind, given in (("input", inputs), ("output", outputs), ("parameter", parameters)):
        unknown = sorted(set(given) - set(declared[kind]))
        if unknown:
            known = ", ".join(declared[kind]) or "none"
            raise ConfigurationError(
                f"{spec.name}: no {kind} named {', '.join(unknown)} (its {kind}s: {known})"
            )
    missing = [n for n in declared["input"] + declared["output"] if n not in {**inputs, **outputs}]
    missing += [p.name for p in spec.parameters if p.required and p.name not in parameters]
    if missing:
        raise ConfigurationError(f"{spec.name}: {', '.join(missing)} must be given")
    arguments = [spec.name]
    for name, value in (*inputs.items(), *outputs.items(), *parameters.items()):
        arguments += [_flag(name), _text(value)]
    return arguments + (["--cache-dir", cache_dir] if cache_dir else ["--no-cache"])


@dataclass(frozen=True)
class Report:
    """A file a component writes that the UI should point at (from the KFP binding's list)."""

    label: str  # the extra link's name
    output: str  # the output directory it is in
    pattern: str  # a file name, or a glob (then the link is the directory)


def component_reports(spec: ComponentSpec) -> tuple[Report, ...]:
    """The reports of `spec`: its HTML outputs (validate's report, evaluate's plots)."""
    labels = {"report": "Report", "plots": "Plots"}
    return tuple(
        Report(labels.get(ui.name, ui.name.title()), ui.source_output, ui.source_file)
        for ui in UI_OUTPUTS.get(spec.name, ())
        if ui.kfp_type == "HTML"
    )


# -- the local operator ---------------------------------------------------------------------


def artifact_url(path: str | Path) -> str:
    """A link to a file or folder of the artifact root: the Cloud Storage console for a
    `/gcs/<bucket>/...` FUSE path, else a file:// URL."""
    text = str(path)
    if text.startswith("/gcs/"):
        return "https://console.cloud.google.com/storage/browser/" + text.removeprefix("/gcs/")
    return Path(text).resolve().as_uri()


def task_result(outputs: Mapping[str, str], reports: tuple[Report, ...] = ()) -> dict[str, Any]:
    """What a task publishes: outputs, their run manifests, the run's status and result (as
    the first output's run manifest records them) and the report files that exist."""
    import json

    manifests = {name: str(Path(path) / RUN_MANIFEST_FILE) for name, path in outputs.items()}
    recorded: dict[str, Any] = {}
    for path in manifests.values():
        try:
            recorded = json.loads(Path(path).read_text())
            break
        except (OSError, ValueError):
            continue
    found: dict[str, list[str]] = {}
    for report in reports:
        folder = Path(outputs.get(report.output, ""))
        files = sorted(str(p) for p in folder.glob(report.pattern)) if folder.is_dir() else []
        if files:
            found[report.label] = files
    return {
        "status": recorded.get("status"),
        "result": recorded.get("result"),
        "error": recorded.get("error"),
        "outputs": dict(outputs),
        "manifests": manifests,
        "reports": found,
    }


@attrs.define()
class ArtifactLink(BaseOperatorLink):
    """An extra link to a file a task wrote (or its folder, for a glob); computed by the worker
    when the task ends, from the task's rendered output paths."""

    label: str
    output: str
    pattern: str

    @property
    def name(self) -> str:
        return self.label

    @property
    def xcom_key(self) -> str:
        return f"_link_portside_{self.label.lower().replace(' ', '_')}"

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        folder = getattr(operator, "outputs", {}).get(self.output)
        if not folder:
            return ""
        if any(c in self.pattern for c in "*?["):
            return artifact_url(folder)
        return artifact_url(Path(folder) / self.pattern)


class PortsideOperator(BaseOperator):
    """Runs a Portside command line as a subprocess, streams its output to the task log and
    maps its exit code to the task's state (`raise_for_exit`)."""

    template_fields = ("argv", "outputs")
    ui_color = "#e8f1fb"

    def __init__(
        self,
        *,
        argv: list[str],
        cwd: str,
        on_gate_failed: GatePolicy = "fail",
        outputs: dict[str, str] | None = None,
        reports: tuple[Report, ...] = (),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.argv = argv
        self.cwd = cwd
        self.on_gate_failed = on_gate_failed
        self.outputs = outputs or {}
        self.reports = reports
        links = [ArtifactLink(r.label, r.output, r.pattern) for r in reports]
        if self.outputs:
            first = next(iter(self.outputs))
            links.append(ArtifactLink("Run manifest", first, RUN_MANIFEST_FILE))
        self.operator_extra_links = tuple(links)
        self._process: subprocess.Popen | None = None

    def execute(self, context: Context) -> dict[str, Any]:
        argv = [str(a) for a in self.argv]
        self.log.info("running in %s: %s", self.cwd, subprocess.list2cmdline(argv))
        returncode, tail = self._run(argv)
        last = tail[-1] if tail else ""
        if self.outputs:
            result = {**task_result(self.outputs, self.reports), "exit_code": returncode}
        else:  # a command: what it said is its result
            result = {"exit_code": returncode, "output": tail}
        for label, files in result.get("reports", {}).items():
            self.log.info("%s: %s", label, ", ".join(files))
        if returncode != 0:
            context["ti"].xcom_push(key=RESULT_KEY, value=result)
        raise_for_exit(returncode, last or f"exit code {returncode}", self.on_gate_failed)
        return result

    def _run(self, argv: list[str]) -> tuple[int, list[str]]:
        """Run to the end, every line to the log; (exit code, its last lines: the last one is
        the entrypoint's one-line reason when it fails)."""
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        # Its own session, so that a timeout or kill reaches its children too.
        self._process = subprocess.Popen(
            argv,
            cwd=self.cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            assert self._process.stdout is not None
            for line in self._process.stdout:
                line = line.rstrip()
                self.log.info("%s", line)
                if line.strip():
                    tail.append(line.strip())
            return self._process.wait(), list(tail)
        finally:
            self._stop()

    def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def on_kill(self) -> None:
        self._stop()
