"""The Airflow binding's `kubernetes` runner: every component task is a pod of the project image.

The pod runs the same entrypoint and arguments as the `local` runner (`python -m
portside.components <name> ...`, or `portside ...` for materialization) in the versioned
component image (the profile's `image.name`, else
`portside.components.image.component_image()`), with the profile's Feast environment, as
the profile's Kubernetes service account, in its namespace.

Artifacts: all pods of a DAG run share one store, mounted at `kubernetes.artifact_root` in
every pod (the binding's run folders `{artifact_root}/<dag_id>/<run_id>/...` are paths in it):

- `artifact_store: pvc://CLAIM`: a ReadWriteMany PersistentVolumeClaim (Filestore, EFS, NFS);
- `artifact_store: gs://BUCKET`: a Cloud Storage bucket through GKE's Cloud Storage FUSE CSI
  driver (the pod gets the `gke-gcsfuse/volumes` annotation the driver's webhook needs).

Why a thin operator: importing the provider's pod operator
(`airflow.providers.cncf.kubernetes.operators.pod`, which pulls in the kubernetes client and
its hundreds of model modules) cost 4.9 s here on top of `airflow.sdk` (`python -X importtime`,
provider 10.5.0, a loaded 2-core machine; the kubernetes client alone 2.5 s), while a whole DAG
file may take 0.2 s to parse. `PortsidePodOperator` therefore holds only plain, templated
values (strings, lists, dicts) and builds the provider's KubernetesPodOperator in execute(): the
worker that runs the task pays the import, the DAG processor never does.

Exit codes keep the binding's policy (pipelines.airflow_binding.raise_for_exit): the pod's
container exit code and the last line of its log (`<component>: <ErrorType>: <reason>`, kept
as the termination message by `FallbackToLogsOnError`) decide between retry (1), failure
without retry (2; 3 = gate failed) and skip (3 where the spec says a failed gate means "nothing
to do", push's "not blessed").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from portside.components.lineage import RUN_MANIFEST_FILE

if TYPE_CHECKING:
    from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
    from airflow.sdk import Context

    from portside.pipelines.airflow_binding import Report
    from portside.pipelines.profile import Profile

ARTIFACTS_VOLUME = "portside-artifacts"
GCS_FUSE_DRIVER = "gcsfuse.csi.storage.gke.io"
# Kubernetes keeps the tail of the log as the termination message when the container fails
# without writing one: the component's one-line reason is the last line of it.
TERMINATION_MESSAGE_POLICY = "FallbackToLogsOnError"


class PortsidePodOperator(BaseOperator):
    """One component (or `portside` command) as a pod; see the module docstring."""

    template_fields = ("image", "cmds", "arguments", "env_vars", "namespace", "outputs")
    template_fields_renderers = {"arguments": "json", "env_vars": "json", "outputs": "json"}
    ui_color = "#d5e8f7"

    def __init__(
        self,
        *,
        image: str,
        cmds: list[str],
        arguments: list[str],
        env_vars: dict[str, str],
        namespace: str,
        service_account_name: str,
        image_pull_policy: str,
        container_resources: dict[str, dict[str, str]],
        artifact_root: str,
        artifact_store: str,
        kubernetes_conn_id: str = "kubernetes_default",
        on_gate_failed: str = "fail",
        outputs: dict[str, str] | None = None,
        reports: tuple[Report, ...] = (),
        pod_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.image = image
        self.cmds = list(cmds)
        self.arguments = list(arguments)
        self.env_vars = dict(env_vars)
        self.namespace = namespace
        self.service_account_name = service_account_name
        self.image_pull_policy = image_pull_policy
        self.container_resources = container_resources
        self.artifact_root = artifact_root
        self.artifact_store = artifact_store
        self.kubernetes_conn_id = kubernetes_conn_id
        self.on_gate_failed = on_gate_failed
        # As the local runner's: the task returns (XCom) its outputs, their run manifests and
        # reports, read from the shared artifact store where the worker mounts it too.
        self.outputs = dict(outputs or {})
        self.reports = reports
        self.operator_extra_links = _links(self.outputs, reports)
        self.pod_options = dict(pod_options or {})  # more KubernetesPodOperator arguments
        self._pod: KubernetesPodOperator | None = None

    def pod_operator(self) -> KubernetesPodOperator:
        """The provider's operator for this task's (rendered) values; imports the provider."""
        from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator
        from kubernetes.client import models as k8s

        volume, annotations = self._artifact_volume(k8s)
        return KubernetesPodOperator(
            task_id=self.task_id,
            kubernetes_conn_id=self.kubernetes_conn_id,
            namespace=self.namespace,
            image=self.image,
            image_pull_policy=self.image_pull_policy,
            cmds=self.cmds,
            arguments=self.arguments,
            env_vars=self.env_vars,
            service_account_name=self.service_account_name,
            container_resources=k8s.V1ResourceRequirements(**self.container_resources),
            volumes=[volume],
            volume_mounts=[k8s.V1VolumeMount(name=ARTIFACTS_VOLUME, mount_path=self.artifact_root)],
            annotations=annotations,
            labels={"app.kubernetes.io/part-of": "portside"},  # the provider adds dag/task/run
            termination_message_policy=TERMINATION_MESSAGE_POLICY,
            # The wait runs in this worker: a deferred inner operator would resume as the
            # provider's class, not as this one, and lose the exit-code policy.
            deferrable=False,
            do_xcom_push=False,
            get_logs=True,
            log_events_on_failure=True,
            log_pod_spec_on_failure=False,  # the failure is re-raised as the exit code's state
            on_finish_action="delete_pod",
            **self.pod_options,
        )

    def _artifact_volume(self, k8s: Any) -> tuple[Any, dict[str, str]]:
        kind, _, name = self.artifact_store.partition("://")
        if kind == "pvc":
            claim = k8s.V1PersistentVolumeClaimVolumeSource(claim_name=name)
            return k8s.V1Volume(name=ARTIFACTS_VOLUME, persistent_volume_claim=claim), {}
        csi = k8s.V1CSIVolumeSource(
            driver=GCS_FUSE_DRIVER,
            volume_attributes={"bucketName": name, "mountOptions": "implicit-dirs"},
        )
        return k8s.V1Volume(name=ARTIFACTS_VOLUME, csi=csi), {"gke-gcsfuse/volumes": "true"}

    def execute(self, context: Context) -> dict[str, Any]:
        from portside.pipelines.airflow_binding import RESULT_KEY, raise_for_exit, task_result

        self._pod = self.pod_operator()
        try:
            # execute_sync, not execute(): calling another operator's execute() from this one
            # is what Airflow's ExecutorSafeguard warns about (and will refuse).
            self._pod.execute_sync(context)
        except Exception as error:
            code, reason = _exit(self._pod)
            if code is None:  # the pod never ran to its end (API error, timeout): retry
                raise
            result = {**task_result(self.outputs, self.reports), "exit_code": code}
            context["ti"].xcom_push(key=RESULT_KEY, value=result)
            raise_for_exit(code, reason or str(error).splitlines()[0], self.on_gate_failed)
            raise
        return {**task_result(self.outputs, self.reports), "exit_code": 0}

    def on_kill(self) -> None:
        if self._pod is not None:
            self._pod.on_kill()  # deletes the pod


def _links(outputs: dict[str, str], reports: tuple[Report, ...]) -> tuple[Any, ...]:
    from portside.pipelines.airflow_binding import ArtifactLink

    links = [ArtifactLink(r.label, r.output, r.pattern) for r in reports]
    if outputs:
        links.append(ArtifactLink("Run manifest", next(iter(outputs)), RUN_MANIFEST_FILE))
    return tuple(links)


def _exit(pod_operator: KubernetesPodOperator) -> tuple[int | None, str]:
    """The base container's exit code and the last line of its termination message."""
    remote = pod_operator.remote_pod
    statuses = (remote.status.container_statuses if remote and remote.status else None) or []
    base = pod_operator.base_container_name
    for status in statuses:
        terminated = status.state.terminated if status.name == base and status.state else None
        if terminated is not None:
            lines = (terminated.message or "").strip().splitlines()
            return terminated.exit_code, lines[-1] if lines else ""
    return None, ""


def kubernetes_operator(
    task_id: str,
    cmds: list[str],
    arguments: list[str],
    *,
    on_gate_failed: str,
    profile: Profile | None = None,
    **operator_kwargs: Any,
) -> PortsidePodOperator:
    """The task `task_id` as a pod running `cmds arguments` (in-image: `python -m
    portside.components NAME ...` or `portside ...`); settings from `profile` (default: the one
    PORTSIDE_PROFILE names, loaded now: a bad profile is an import error of the DAG file naming
    the field)."""
    if profile is None:
        from portside.pipelines.profile import load_profile, profile_path

        profile = load_profile(profile_path())
    kube = profile.kubernetes
    image = profile.image_name()
    # PORTSIDE_IMAGE: the image the run manifests record as their lineage.
    environment = {**profile.feast.environment(), "PORTSIDE_IMAGE": image}
    return PortsidePodOperator(
        task_id=task_id,
        image=image,
        cmds=cmds,
        arguments=arguments,
        env_vars=environment,
        namespace=kube.namespace,
        service_account_name=kube.service_account,
        image_pull_policy=kube.image_pull_policy,
        container_resources=kube.resources_for(task_id),
        artifact_root=kube.artifact_root,
        artifact_store=kube.artifact_store,
        kubernetes_conn_id=kube.kubernetes_conn_id,
        on_gate_failed=on_gate_failed,
        **operator_kwargs,
    )
