"""The Airflow binding's `kubernetes` and `vertex` runners, run by real Airflow (`dag.test()`).

- kubernetes: the provider's KubernetesPodOperator talks to a loopback Kubernetes API (a
  kubeconfig names it) that records each pod it is asked to create and ends it with the exit
  code the test chose. The recorded pods are what a cluster would run: image, command,
  arguments rendered for the run's data interval, environment, service account, namespace,
  volumes, resources; the task states show the exit-code policy (retry, fail, skip).
- vertex: execute() compiles the pipeline with the production profile and submits it through
  the real google-cloud-aiplatform client to tests/vertex_loopback.py, then defers; dag.test
  imports the trigger from its classpath, as the triggerer does, and runs it against the
  loopback's GET job; the completion method turns the job's end into the task's state.

Airflow runs in a subprocess (this file run as a script) with its own AIRFLOW_HOME, because it
reads its configuration at import. Credentials are Application Default Credentials: an
authorized-user file whose token endpoint is a loopback too.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import threading
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RESULT_MARKER = "PORTSIDE-DAG-TEST "

if __name__ != "__main__":
    import pytest
    import yaml
    from airflow_env import DB_FILE, airflow_environment, make_airflow_home
    from conftest import ROOT, run_command
    from test_vertex_submit import _created_job
    from vertex_loopback import LOCATION, Loopback, new_bucket_routes

    from portside.components.image import component_image

    pytestmark = pytest.mark.integration
    PROFILE = ROOT / "deploy" / "profiles" / "production.yaml"
    STEPS = ["features", "validate", "train", "evaluate", "push"]
    LOGICAL_DATE = "2026-11-30T00:00:00+00:00"  # daily schedule: interval [11-29, 11-30)
    ARTIFACT_ROOT = "/mnt/portside"


# -- the probe: what runs inside the Airflow subprocess ---------------------------------------


def _dag_test(dag_file: str, dag_id: str, logical_date: str, conf: str) -> None:
    """dag.test() one run of `dag_id`, then print its task states and XComs as JSON."""
    import importlib.util

    from airflow import settings
    from airflow.models.taskinstance import TaskInstance
    from airflow.models.xcom import XComModel
    from airflow.sdk import DAG
    from sqlalchemy import select

    spec = importlib.util.spec_from_file_location(f"dag_under_test_{dag_id}", dag_file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(d for d in vars(module).values() if isinstance(d, DAG) and d.dag_id == dag_id)
    run = dag.test(logical_date=datetime.fromisoformat(logical_date), run_conf=json.loads(conf))
    session = settings.Session()
    where = dict(dag_id=dag_id, run_id=run.run_id)
    tis = session.scalars(select(TaskInstance).filter_by(**where)).all()
    xcoms = session.scalars(select(XComModel).filter_by(**where)).all()
    result = {
        "run_id": run.run_id,
        "state": str(run.state),
        "tasks": {ti.task_id: {"state": str(ti.state), "try": ti.try_number} for ti in tis},
        "xcom": {f"{x.task_id}.{x.key}": XComModel.deserialize_value(x) for x in xcoms},
    }
    print(RESULT_MARKER + json.dumps(result, default=str), flush=True)


def _imported_at_parse(dag_file: str) -> None:
    """Import a DAG file; print which heavy modules that pulled in."""
    import runpy

    runpy.run_path(dag_file)
    # (Airflow's providers manager reads the provider's get_provider_info: that is no import of
    # its operators or of the kubernetes client.)
    heavy = (
        "kubernetes",
        "airflow.providers.cncf.kubernetes.operators",
        "google.cloud.aiplatform",
        "kfp",
        "feast",
        "tensorflow",
    )
    found = sorted(m for m in sys.modules if m.split(".")[0] in heavy or m.startswith(heavy))
    print(RESULT_MARKER + json.dumps(found), flush=True)


if __name__ == "__main__":
    {"dag-test": _dag_test, "parse": _imported_at_parse}[sys.argv[1]](*sys.argv[2:])
    sys.exit(0)


# -- loopbacks ------------------------------------------------------------------------------


class KubeCluster:
    """Enough of the Kubernetes core API for KubernetesPodOperator's synchronous run: pods are
    created already ended, with the next exit code listed for their task (default 0) and, on
    failure, the log tail as termination message (what `FallbackToLogsOnError` keeps)."""

    def __init__(self, exits: dict[str, list[int]] | None = None) -> None:
        self.exits = {task: list(codes) for task, codes in (exits or {}).items()}
        self.pods: dict[str, dict[str, Any]] = {}
        self.created: list[dict[str, Any]] = []  # every pod body as the operator sent it

    def routes(self) -> dict:
        namespace = r"/api/v1/namespaces/(?P<namespace>[^/]+)"
        pod = namespace + r"/pods/(?P<name>[^/]+)"
        return {
            ("GET", namespace + r"/pods"): self.list,
            ("POST", namespace + r"/pods"): self.create,
            ("GET", pod + r"/log"): self.log,
            ("GET", pod): self.get,
            ("PATCH", pod): self.patch,
            ("DELETE", pod): self.delete,
            ("GET", namespace + r"/events"): lambda r, m: (200, {"items": []}),
        }

    @staticmethod
    def reason(task: str, code: int) -> str:
        return f"{task}: exit {code}" if code else f"{task}: succeeded"

    def create(self, request, match):
        body = request.body
        task = body["metadata"]["labels"]["task_id"]
        queued = self.exits.get(task) or [0]
        code = queued.pop(0) if len(queued) > 1 else queued[0]
        now = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        container = body["spec"]["containers"][0]
        terminated = {
            "exitCode": code,
            "reason": "Error" if code else "Completed",
            "message": self.reason(task, code) if code else None,
            "startedAt": now,
            "finishedAt": now,
        }
        pod = {
            **body,
            "metadata": {
                **body["metadata"],
                "uid": f"uid-{len(self.created)}",
                "creationTimestamp": now,
            },
            "status": {
                "phase": "Failed" if code else "Succeeded",
                "containerStatuses": [
                    {
                        "name": container["name"],
                        "image": container["image"],
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"terminated": terminated},
                    }
                ],
            },
        }
        self.created.append(body)
        self.pods[body["metadata"]["name"]] = pod
        return 201, pod

    def list(self, request, match):
        selector = request.query.get("labelSelector", [""])[0]
        found = [p for p in self.pods.values() if _selects(selector, p["metadata"]["labels"])]
        return 200, {"metadata": {}, "items": found}

    def get(self, request, match):
        pod = self.pods.get(match["name"])
        return (200, pod) if pod else (404, {"kind": "Status", "code": 404, "reason": "NotFound"})

    def log(self, request, match):
        pod = self.pods[match["name"]]
        task = pod["metadata"]["labels"]["task_id"]
        code = pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"]
        stamp = "2026-12-01T00:00:00.000000000Z"
        return 200, f"{stamp} {task}: starting\n{stamp} {self.reason(task, code)}\n".encode()

    def patch(self, request, match):
        pod = self.pods[match["name"]]
        pod["metadata"]["labels"].update(request.body.get("metadata", {}).get("labels", {}))
        return 200, pod

    def delete(self, request, match):
        pod = self.pods.pop(match["name"], None)
        return (200, pod) if pod else (404, {"kind": "Status", "code": 404, "reason": "NotFound"})


def _selects(selector: str, labels: dict[str, str]) -> bool:
    """Kubernetes equality-based label selectors: a=b, a!=b, !a."""
    for term in filter(None, selector.split(",")):
        if term.startswith("!"):
            if term[1:] in labels:
                return False
        elif "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        else:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
    return True


class TokenEndpoint:
    """An OAuth token endpoint: every refresh of the authorized-user credentials gets a token."""

    def __init__(self) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                data = json.dumps({"access_token": "loopback", "expires_in": 3600}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/token"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class PipelineJobs:
    """CreatePipelineJob and GetPipelineJob: each GET answers the next of `states`."""

    def __init__(self, states: list[str], error: str = "") -> None:
        self.states = list(states)
        self.error = error
        self.jobs: dict[str, dict[str, Any]] = {}

    def routes(self) -> dict:
        return {
            ("POST", LOCATION + r"/pipelineJobs"): self.create,
            ("GET", LOCATION + r"/pipelineJobs/(?P<job>[^/:]+)"): self.get,
        }

    def create(self, request, match):
        status, job = _created_job(request, match)
        self.jobs[job["name"].rsplit("/", 1)[1]] = job
        return status, job

    def get(self, request, match):
        job = dict(self.jobs[match["job"]])
        job["state"] = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        if job["state"] == "PIPELINE_STATE_FAILED":
            job["error"] = {"code": 9, "message": self.error}
        return 200, job


# -- fixtures and helpers -------------------------------------------------------------------


@pytest.fixture(scope="module")
def airflow_db(tmp_path_factory) -> Path:
    """A migrated metadata database (SQLite), copied by every run."""
    return make_airflow_home(tmp_path_factory.mktemp("airflow_template")).database


def _dag_run(
    airflow_db: Path,
    work: Path,
    dag_file: Path,
    dag_id: str,
    env: dict[str, str],
    conf: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], str]:
    """One `dag.test()` run in its own AIRFLOW_HOME: (its result, its output)."""
    home = work / "airflow_home"
    home.mkdir()
    shutil.copy(airflow_db, home / DB_FILE)
    argv = [sys.executable, __file__, "dag-test", str(dag_file), dag_id, LOGICAL_DATE]
    done = run_command(
        [*argv, json.dumps(conf or {})],
        env=airflow_environment(home, dag_file.parent, env),
        timeout=600,
    )
    output = done.stdout + done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT_MARKER)]
    assert done.returncode == 0 and lines, (
        f"dag.test failed ({done.returncode}):\n{output[-12000:]}"
    )
    return json.loads(lines[-1].removeprefix(RESULT_MARKER)), output


def _kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "loopback", "cluster": {"server": server}}],
                "users": [{"name": "tester", "user": {"token": "loopback"}}],
                "contexts": [
                    {"name": "loopback", "context": {"cluster": "loopback", "user": "tester"}}
                ],
                "current-context": "loopback",
            }
        )
    )
    return path


def _kubernetes_env(tmp_path: Path, cluster_url: str) -> dict[str, str]:
    return {
        "PORTSIDE_AIRFLOW_RUNNER": "kubernetes",
        "PORTSIDE_PROFILE": str(PROFILE),
        # The run folders inside the pods' shared mount (kubernetes.artifact_root).
        "PORTSIDE_ARTIFACT_ROOT": ARTIFACT_ROOT,
        "PORTSIDE_CACHE_DIR": "off",
        "KUBECONFIG": str(_kubeconfig(tmp_path / "kubeconfig", cluster_url)),
    }


def _env_of(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


def _flag(arguments: list[str], flag: str) -> str:
    return arguments[arguments.index(flag) + 1]


# -- kubernetes -----------------------------------------------------------------------------


def test_training_dag_runs_each_step_as_a_pod_of_the_project_image(airflow_db, tmp_path):
    from portside.pipelines.profile import load_profile

    profile = load_profile(PROFILE, environ={})
    cluster = KubeCluster()
    with Loopback(cluster.routes()) as server:
        result, output = _dag_run(
            airflow_db,
            tmp_path,
            ROOT / "dags" / "training_pipeline.py",
            "training_pipeline",
            _kubernetes_env(tmp_path, server.url),
        )
    assert result["state"] == "success", output[-12000:]
    assert {t: s["state"] for t, s in result["tasks"].items()} == dict.fromkeys(STEPS, "success")
    pods = cluster.created
    assert [p["metadata"]["labels"]["task_id"] for p in pods] == STEPS
    run_folder = f"{ARTIFACT_ROOT}/training_pipeline/{result['run_id']}"
    image = component_image()
    assert re.fullmatch(r".+/components:\d+\.\d+\.\d+.*", image)
    for step, pod in zip(STEPS, pods, strict=True):
        spec = pod["spec"]
        (container,) = spec["containers"]
        assert pod["metadata"]["namespace"] == "portside"
        assert spec["serviceAccountName"] == "portside-runner"
        assert spec["restartPolicy"] == "Never"
        assert container["image"] == image
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["command"] == ["python", "-m", "portside.components"]
        arguments = container["args"]
        assert arguments[0] == step and "--no-cache" in arguments
        assert not any("{{" in a or "{%" in a for a in arguments), arguments
        assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
        env = _env_of(container)
        assert env["FEAST_REGISTRY_URL"] == profile.feast.registry_url
        assert env["FEAST_REDIS_CONNECTION"] == profile.feast.redis_connection
        assert env["PORTSIDE_FEATURE_SOURCES"] == profile.feast.sources
        assert env["PORTSIDE_IMAGE"] == image
        assert spec["volumes"] == [
            {
                "name": "portside-artifacts",
                "persistentVolumeClaim": {"claimName": "portside-artifacts"},
            }
        ]
        assert container["volumeMounts"] == [
            {"name": "portside-artifacts", "mountPath": ARTIFACT_ROOT}
        ]
        cpu = "4" if step == "train" else "1"
        assert container["resources"]["requests"]["cpu"] == cpu
    by_step = {p["metadata"]["labels"]["task_id"]: p["spec"]["containers"][0]["args"] for p in pods}
    # Arguments rendered for the run's data interval [2026-11-29, 2026-11-30).
    features = by_step["features"]
    assert _flag(features, "--rows-until") == LOGICAL_DATE
    assert _flag(features, "--rows-from") == "2026-09-01T00:00:00+00:00"  # 90 days before
    assert _flag(features, "--training-set") == f"{run_folder}/features/training_set"
    assert _flag(features, "--feature-service") == "fraud_model_v1"
    assert _flag(by_step["validate"], "--as-of") == LOGICAL_DATE
    assert _flag(by_step["validate"], "--training-set") == f"{run_folder}/features/training_set"
    assert _flag(by_step["train"], "--model") == f"{run_folder}/train/model"
    assert _flag(by_step["push"], "--evaluation") == f"{run_folder}/evaluate/evaluation"
    # The params' defaults are the profile's: the image's repo and suite, the shared MLflow.
    assert _flag(features, "--feature-repo") == profile.image.feature_repo
    assert _flag(by_step["validate"], "--suite") == profile.image.expectation_suite
    for step in ("train", "evaluate", "push"):
        assert _flag(by_step[step], "--tracking-uri") == profile.registry.tracking_uri, step
    # Each task still returns where its outputs and run manifests are.
    returned = result["xcom"]["validate.return_value"]
    assert returned["exit_code"] == 0
    assert (
        returned["manifests"]["validation"] == f"{run_folder}/validate/validation/run_manifest.json"
    )


EXIT_CODES_DAG = """
from datetime import datetime, timedelta, timezone

from airflow.sdk import DAG

from portside.pipelines.airflow_binding import Binding

with DAG(
    "portside_exit_codes",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    default_args={"retry_delay": timedelta(seconds=1)},
) as dag:
    component_task = Binding.from_environment().component_task
    rows, out = {"entity_rows": "/mnt/portside/rows.parquet"}, "/mnt/portside/out"
    component_task(  # exit 1 (an error) once, then 0
        "features", inputs=rows, outputs={"training_set": out},
        parameters={"feature_service": "fraud_model_v1", "label_column": "is_fraud"},
        retries=2,
    )
    component_task(  # exit 3: validation failed
        "validate", inputs={"training_set": out}, outputs={"validation": out},
        parameters={"suite": "/opt/suite.json"}, retries=2,
    )
    component_task(  # exit 2: a usage error
        "train", inputs={"training_set": out, "validation": out}, outputs={"model": out},
        parameters={}, retries=2,
    )
    component_task(  # exit 3: not blessed
        "push", inputs={"model": out, "evaluation": out}, outputs={"pushed": out},
        parameters={"model_name": "fraud_model"}, retries=2,
    )
"""


def test_exit_codes_retry_fail_or_skip_the_pod_tasks(airflow_db, tmp_path):
    dags = tmp_path / "dags"
    dags.mkdir()
    dag_file = dags / "exit_codes.py"
    dag_file.write_text(EXIT_CODES_DAG)
    cluster = KubeCluster({"features": [1, 0], "validate": [3], "train": [2], "push": [3]})
    with Loopback(cluster.routes()) as server:
        # Artifacts in a Cloud Storage bucket this time (GKE's Cloud Storage FUSE CSI driver).
        env = {
            **_kubernetes_env(tmp_path, server.url),
            "PORTSIDE_KUBERNETES__ARTIFACT_STORE": "gs://portside-artifacts",
        }
        result, output = _dag_run(airflow_db, tmp_path, dag_file, "portside_exit_codes", env)
    tasks = result["tasks"]
    pods = [p["metadata"]["labels"]["task_id"] for p in cluster.created]
    assert tasks["features"] == {"state": "success", "try": 2}, output[-12000:]
    assert pods.count("features") == 2  # the error was retried in a new pod
    # A failed gate and a usage error fail at once, whatever `retries` says.
    assert tasks["validate"] == {"state": "failed", "try": 1}
    assert tasks["train"] == {"state": "failed", "try": 1}
    assert pods.count("validate") == pods.count("train") == 1
    # push's spec says a failed gate means nothing to do: skipped, not failed.
    assert tasks["push"] == {"state": "skipped", "try": 1}
    assert result["xcom"]["validate.portside"]["exit_code"] == 3
    assert "gate failed (not retried): validate: exit 3" in output
    assert "nothing to do: push: exit 3" in output
    pod = cluster.created[0]
    assert pod["metadata"]["annotations"] == {"gke-gcsfuse/volumes": "true"}
    assert pod["spec"]["volumes"] == [
        {
            "name": "portside-artifacts",
            "csi": {
                "driver": "gcsfuse.csi.storage.gke.io",
                "volumeAttributes": {
                    "bucketName": "portside-artifacts",
                    "mountOptions": "implicit-dirs",
                },
            },
        }
    ]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("namespace", "Portside", "'Portside' is not a Kubernetes name"),
        ("service_account", "runner@project", "is not a Kubernetes name"),
        ("artifact_store", "s3://bucket", "neither pvc://CLAIM"),
        ("artifact_store", "gs://bucket/prefix", "the bucket alone"),
        ("artifact_root", "mnt/portside", "must be an absolute path inside the pod"),
        ("image_pull_policy", "Sometimes", "'Always', 'IfNotPresent' or 'Never'"),
    ],
)
def test_bad_kubernetes_settings_are_refused_naming_the_field(field, value, message):
    from portside.components.errors import ConfigurationError
    from portside.pipelines.profile import load_profile

    environ = {f"PORTSIDE_KUBERNETES__{field.upper()}": value}
    with pytest.raises(ConfigurationError, match=f"kubernetes.{field}: .*{re.escape(message)}"):
        load_profile(PROFILE, environ=environ)


def test_task_resources_override_the_defaults_per_task():
    from portside.pipelines.profile import load_profile

    kube = load_profile(PROFILE, environ={}).kubernetes
    assert kube.resources_for("train") == {
        "requests": {"cpu": "4", "memory": "8Gi"},
        "limits": {"memory": "16Gi"},
    }
    assert kube.resources_for("validate") == {
        "requests": {"cpu": "1", "memory": "4Gi"},
        "limits": {"memory": "8Gi"},
    }


def test_dag_files_import_neither_the_provider_nor_google_at_parse(tmp_path):
    for runner in ("kubernetes", "vertex"):
        home = tmp_path / runner
        overrides = {"PORTSIDE_AIRFLOW_RUNNER": runner, "PORTSIDE_PROFILE": str(PROFILE)}
        env = airflow_environment(home, ROOT / "dags", overrides)
        for dag_file in sorted((ROOT / "dags").glob("*.py")):
            done = run_command([sys.executable, __file__, "parse", str(dag_file)], env=env)
            lines = [x for x in done.stdout.splitlines() if x.startswith(RESULT_MARKER)]
            assert done.returncode == 0 and lines, done.stdout + done.stderr
            assert json.loads(lines[-1].removeprefix(RESULT_MARKER)) == [], (runner, dag_file)


# -- vertex ---------------------------------------------------------------------------------


@pytest.fixture
def google_credentials(tmp_path):
    """Application Default Credentials: a service-account key of its own whose token endpoint
    is a loopback (google-auth pins authorized-user files to Google's endpoint)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    tokens = TokenEndpoint()
    path = tmp_path / "adc.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "portside-tests",
                "private_key_id": "loopback",
                "private_key": pem,
                "client_email": "tester@portside-tests.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": tokens.url,
            }
        )
    )
    yield str(path)
    tokens.close()


def _vertex_env(server_url: str, credentials: str) -> dict[str, str]:
    return {
        "PORTSIDE_AIRFLOW_RUNNER": "vertex",
        "PORTSIDE_PROFILE": str(PROFILE),
        "PORTSIDE_VERTEX__API_ENDPOINT": server_url,
        "STORAGE_EMULATOR_HOST": server_url,  # the pipeline root's bucket check
        "GOOGLE_APPLICATION_CREDENTIALS": credentials,
    }


def test_vertex_mode_submits_the_compiled_pipeline_and_waits_deferred(
    airflow_db, tmp_path, google_credentials
):
    from portside.pipelines.profile import load_profile

    profile = load_profile(PROFILE, environ={})
    jobs = PipelineJobs(["PIPELINE_STATE_RUNNING", "PIPELINE_STATE_SUCCEEDED"])
    with Loopback({**jobs.routes(), **new_bucket_routes()}) as server:
        result, output = _dag_run(
            airflow_db,
            tmp_path,
            ROOT / "dags" / "training_pipeline.py",
            "training_pipeline",
            _vertex_env(server.url, google_credentials),
            conf={"entity_rows": "gs://ml-data/rows.parquet", "epochs": 3},
        )
        (request,) = server.find("POST", LOCATION + r"/pipelineJobs")
        polls = server.find("GET", LOCATION + r"/pipelineJobs/[^/]+")
    assert result["state"] == "success", output[-12000:]
    assert result["tasks"] == {"training_pipeline_on_vertex": {"state": "success", "try": 1}}
    vertex = profile.vertex
    assert request.path == f"/v1/projects/{vertex.project}/locations/{vertex.region}/pipelineJobs"
    job = request.body
    assert job["displayName"] == "portside-training-20261130"
    assert job["serviceAccount"] == vertex.service_account
    assert job["network"] == vertex.network
    assert job["encryptionSpec"]["kmsKeyName"] == vertex.encryption_key
    assert job["labels"]["team"] == "fraud"
    runtime = job["runtimeConfig"]
    assert runtime["gcsOutputDirectory"] == vertex.pipeline_root
    values = runtime["parameterValues"]
    assert values["entity_rows_uri"] == "gs://ml-data/rows.parquet"
    assert values["as_of"] == LOGICAL_DATE  # the data interval's end, not the clock
    # The training set is the rows of the 90 days (the param's default) before that end.
    assert values["rows_until"] == LOGICAL_DATE
    assert (
        values["rows_from"]
        == (datetime.fromisoformat(LOGICAL_DATE) - timedelta(days=90)).isoformat()
    )
    assert values["epochs"] == 3 and values["min_roc_auc"] == 0.75  # typed as declared
    assert values["feature_service"] == "fraud_model_v1"
    spec = job["pipelineSpec"]
    assert spec["pipelineInfo"]["name"] == "portside-training"
    executors = spec["deploymentSpec"]["executors"].values()
    images = {e["container"]["image"] for e in executors if "container" in e}
    assert images == {component_image()}
    assert len(polls) == 2  # RUNNING, then SUCCEEDED: the trigger polled until the end
    job_name = next(iter(jobs.jobs.values()))["name"]
    returned = result["xcom"]["training_pipeline_on_vertex.return_value"]
    assert returned["job"] == job_name and returned["state"] == "PIPELINE_STATE_SUCCEEDED"
    job_id = job_name.rsplit("/", 1)[1]
    console = (
        f"https://console.cloud.google.com/vertex-ai/locations/{vertex.region}/pipelines/runs/"
        f"{job_id}?project={vertex.project}"
    )
    assert returned["console_url"] == console
    assert result["xcom"]["training_pipeline_on_vertex.vertex_job_url"] == console  # the link


FAILING_VERTEX_DAG = """
from datetime import datetime, timezone

from airflow.sdk import DAG

from portside.pipelines.airflow_vertex import VertexPipelineOperator

START = datetime(2026, 1, 1, tzinfo=timezone.utc)
with DAG("portside_vertex_failure", schedule=None, start_date=START) as dag:
    VertexPipelineOperator(
        task_id="on_vertex",
        parameter_values={"entity_rows_uri": "gs://ml-data/rows.parquet", "as_of": "{{ ds }}"},
        poll_interval=1,
    )
"""


def test_a_failed_vertex_job_fails_the_task(airflow_db, tmp_path, google_credentials):
    dags = tmp_path / "dags"
    dags.mkdir()
    dag_file = dags / "vertex_failure.py"
    dag_file.write_text(FAILING_VERTEX_DAG)
    jobs = PipelineJobs(["PIPELINE_STATE_FAILED"], error="validate: GateFailed: 3 expectations")
    with Loopback({**jobs.routes(), **new_bucket_routes()}) as server:
        result, output = _dag_run(
            airflow_db,
            tmp_path,
            dag_file,
            "portside_vertex_failure",
            _vertex_env(server.url, google_credentials),
        )
    assert result["tasks"] == {"on_vertex": {"state": "failed", "try": 1}}, output[-12000:]
    assert result["state"] == "failed"
    assert "ended PIPELINE_STATE_FAILED: validate: GateFailed: 3 expectations" in output
    (request,) = jobs.jobs.values()
    assert request["runtimeConfig"]["parameterValues"]["as_of"] == "2026-11-30"
