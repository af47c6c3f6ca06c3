"""The Airflow binding's `vertex` runner: the whole training pipeline as one Vertex AI job.

`VertexPipelineOperator`, when it runs, compiles the KFP pipeline with the production profile
(pipelines.compile), submits it to Vertex AI Pipelines (pipelines.vertex.submit: the same checks
and request as `portside submit --profile`), and defers to `VertexPipelineJobTrigger`, which
polls the job in the triggerer until it ends: no worker slot is held while the job runs. The
task links to the job in the Cloud console (extra link "Vertex AI pipeline job", set as soon as
the job exists) and returns {job, state, console_url}.

Why not the Google provider's Vertex AI operators, and why every Google import is inside a
method: importing google.cloud.aiplatform costs ~7 s here, and a DAG importing the provider's
Vertex AI operator took 4.9 s to parse in a public report, against the 0.2 s a DAG file may take.
This module imports only airflow at the top; aiplatform, kfp and the profile are imported by
execute() (the worker) and by the trigger's run() (the triggerer), never when a DAG is parsed.

Credentials: Application Default Credentials of the worker and the triggerer (Workload Identity
on GKE, GOOGLE_APPLICATION_CREDENTIALS elsewhere), as `portside submit` uses them.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator, BaseOperatorLink
from airflow.sdk.exceptions import AirflowException
from airflow.triggers.base import BaseTrigger, TriggerEvent

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import TaskInstanceKey

JOB_URL_KEY = "vertex_job_url"  # the XCom of the job's console URL: the extra link's value
# Vertex AI's terminal pipeline states (PipelineState); anything else is still on its way.
SUCCEEDED = "PIPELINE_STATE_SUCCEEDED"
ENDED = {SUCCEEDED, "PIPELINE_STATE_FAILED", "PIPELINE_STATE_CANCELLED"}


def console_url(job_name: str) -> str:
    """The job's page in the Cloud console, from projects/P/locations/L/pipelineJobs/ID."""
    parts = job_name.split("/")
    project, location, job_id = parts[1], parts[3], parts[5]
    return (
        f"https://console.cloud.google.com/vertex-ai/locations/{location}/pipelines/runs/"
        f"{job_id}?project={project}"
    )


class VertexJobLink(BaseOperatorLink):
    """The task's Vertex AI pipeline job in the Cloud console."""

    name = "Vertex AI pipeline job"

    @property
    def xcom_key(self) -> str:
        # execute() stores the URL here as soon as the job exists, so the link shows while the
        # task waits deferred; the worker stores get_link()'s value here again when it ends.
        return JOB_URL_KEY

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk import BaseXCom

        return BaseXCom.get_value(ti_key=ti_key, key=JOB_URL_KEY) or ""


class VertexPipelineOperator(BaseOperator):
    """Compile the training pipeline with a profile, submit it to Vertex AI, wait deferred.

    `parameter_values` (templated) are the pipeline's parameters, typed by the compiled
    pipeline's declarations like `portside submit --param` (a rendered "3" becomes 3 for an
    integer parameter); `labels` (templated) are added to the profile's `vertex.labels`.
    `profile`: a profile file (default: PORTSIDE_PROFILE, else deploy/profiles/production.yaml).
    """

    template_fields = ("parameter_values", "display_name", "labels")
    template_fields_renderers = {"parameter_values": "json", "labels": "json"}
    operator_extra_links = (VertexJobLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        parameter_values: dict[str, Any],
        display_name: str = "portside-training-{{ ds_nodash }}",
        labels: dict[str, str] | None = None,
        profile: str | None = None,
        poll_interval: float = 60.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.parameter_values = dict(parameter_values)
        self.display_name = display_name
        self.labels = dict(labels or {})
        self.profile = profile
        self.poll_interval = poll_interval

    def execute(self, context: Context) -> None:
        import tempfile

        from portside.pipelines.compile import compile_pipeline, parameter_definitions
        from portside.pipelines.profile import load_profile, profile_path
        from portside.pipelines.vertex import submit

        profile = load_profile(self.profile or profile_path())
        target = profile.vertex_target(labels={**profile.vertex.labels, **self.labels})
        target.check()  # before the compile: a bad target costs nothing
        with tempfile.TemporaryDirectory(prefix="portside-vertex-") as work:
            template = compile_pipeline(Path(work) / "training.yaml", profile)
            parameters = typed_parameters(self.parameter_values, parameter_definitions(template))
            job_name = submit(target, template, parameters, self.display_name)
        self.log.info("submitted %s: %s", job_name, console_url(job_name))
        context["ti"].xcom_push(key=JOB_URL_KEY, value=console_url(job_name))
        self.defer(
            trigger=VertexPipelineJobTrigger(
                job_name=job_name,
                api_endpoint=target.api_endpoint,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
        )

    def execute_complete(self, context: Context, event: dict[str, Any]) -> dict[str, str]:
        """Back from the trigger: the job's end is the task's end."""
        job, state = event.get("job", ""), event.get("state", "")
        if event.get("status") == "success":
            self.log.info("%s ended %s", job, state)
            return {"job": job, "state": state, "console_url": console_url(job)}
        raise AirflowException(
            f"Vertex AI pipeline job {job} ended {state or 'unknown'}: "
            f"{event.get('message') or 'no message'} (see {console_url(job) if job else '-'})"
        )


def typed_parameters(values: dict[str, Any], definitions: dict[str, dict[str, Any]]) -> dict:
    """Rendered values typed as `portside submit --param NAME=VALUE` types them."""
    from portside.pipelines.pipeline_commands import coerce_parameters

    pairs = [f"{k}={v if isinstance(v, str) else json.dumps(v)}" for k, v in values.items()]
    return coerce_parameters(pairs, definitions)


class VertexPipelineJobTrigger(BaseTrigger):
    """Polls a Vertex AI pipeline job until it ends; runs in the triggerer.

    The wait between polls starts at FIRST_POLL_S and doubles up to `poll_interval`: a job that
    fails at once (a bad parameter, a missing image) is seen within seconds, a long training
    costs one request a minute.
    """

    FIRST_POLL_S = 5.0

    def __init__(
        self, job_name: str, api_endpoint: str | None = None, poll_interval: float = 60.0
    ) -> None:
        super().__init__()
        self.job_name = job_name
        self.api_endpoint = api_endpoint
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_name": self.job_name,
                "api_endpoint": self.api_endpoint,
                "poll_interval": self.poll_interval,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        event = {"job": self.job_name}
        try:
            # The client is synchronous (the REST transport): each call runs in a thread, so
            # the triggerer's event loop keeps serving its other triggers meanwhile.
            client = await asyncio.to_thread(_pipeline_client, self.job_name, self.api_endpoint)
            wait = min(self.FIRST_POLL_S, self.poll_interval)
            while True:
                job = await asyncio.to_thread(client.get_pipeline_job, name=self.job_name)
                state = job.state.name
                if state in ENDED:
                    message = job.error.message
                    status = "success" if state == SUCCEEDED else "failed"
                    yield TriggerEvent(
                        {**event, "status": status, "state": state, "message": message}
                    )
                    return
                self.log.info("%s is %s; next look in %.0f s", self.job_name, state, wait)
                await asyncio.sleep(wait)
                wait = min(wait * 2, self.poll_interval)
        except Exception as error:  # the API or the credentials: the task fails (and retries)
            message = f"{type(error).__name__}: {error}"
            yield TriggerEvent({**event, "status": "error", "state": "", "message": message})


def _pipeline_client(job_name: str, api_endpoint: str | None) -> Any:
    """Vertex AI's PipelineService client (REST), for the region the job runs in."""
    import google.auth
    from google.cloud.aiplatform_v1 import PipelineServiceClient

    location = job_name.split("/")[3]
    credentials, _ = google.auth.default()
    return PipelineServiceClient(
        credentials=credentials,
        transport="rest",
        client_options={"api_endpoint": api_endpoint or f"{location}-aiplatform.googleapis.com"},
    )
