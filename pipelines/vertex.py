"""Submission of the compiled training pipeline to Vertex AI Pipelines, and schedules.

Everything the request needs is checked before the client is touched, so a typo costs no round
trip: region, gs:// pipeline root, an explicit service account (never the default compute
account), label syntax, and a pipeline that publishes to a shared registry.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from portside.components.errors import ConfigurationError, PortsideError

REGION = re.compile(r"^[a-z]+-[a-z]+[0-9]+$")
SERVICE_ACCOUNT = re.compile(r"^[a-z0-9-]+@[a-z0-9-]+\.iam\.gserviceaccount\.com$")
LABEL = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class VertexTarget:
    """Where and as whom a pipeline job runs."""

    project: str
    region: str
    pipeline_root: str
    service_account: str
    network: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    enable_caching: bool | None = None  # None: as compiled (per-task options)
    experiment: str | None = None
    encryption_key: str | None = None
    api_endpoint: str | None = None  # a private or regional endpoint; tests use a loopback

    def check(self) -> None:
        if not self.project:
            raise ConfigurationError("--project is required")
        if not REGION.match(self.region or ""):
            raise ConfigurationError(f"--region {self.region!r} is not a region like us-central1")
        if not self.pipeline_root.startswith("gs://") or len(self.pipeline_root) <= 5:
            raise ConfigurationError(
                f"--pipeline-root {self.pipeline_root!r} must be a gs:// URI (gs://bucket/path)"
            )
        if not self.service_account:
            raise ConfigurationError(
                "--service-account is required: Portside never runs jobs as the default "
                "compute service account"
            )
        if not SERVICE_ACCOUNT.match(self.service_account):
            raise ConfigurationError(
                f"--service-account {self.service_account!r} is not a service account email "
                "(NAME@PROJECT.iam.gserviceaccount.com)"
            )
        for key, value in self.labels.items():
            if not LABEL.match(key) or not LABEL_VALUE.match(value):
                raise ConfigurationError(
                    f"label {key}={value}: keys and values are lowercase letters, digits, "
                    "_ and -, at most 63 characters, keys start with a letter"
                )
        if self.encryption_key and not self.encryption_key.startswith("projects/"):
            raise ConfigurationError(
                "--encryption-key must be a KMS key name (projects/P/locations/L/keyRings/R/"
                "cryptoKeys/K)"
            )


def parse_labels(pairs: list[str]) -> dict[str, str]:
    labels = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise ConfigurationError(f"label {pair!r} is not KEY=VALUE")
        labels[key] = value
    return labels


def init_client(target: VertexTarget, credentials: Any = None) -> Any:
    """Point the aiplatform client at the target (REST); returns the credentials it uses:
    `credentials`, else the application default ones."""
    from google.auth.exceptions import DefaultCredentialsError
    from google.cloud import aiplatform

    if credentials is None:
        import google.auth

        try:
            credentials, _ = google.auth.default()
        except DefaultCredentialsError as error:
            raise ConfigurationError(
                "no Google Cloud credentials: run `gcloud auth application-default login` "
                "or set GOOGLE_APPLICATION_CREDENTIALS"
            ) from error
    aiplatform.init(
        project=target.project,
        location=target.region,
        credentials=credentials,
        api_endpoint=target.api_endpoint,
        api_transport="rest",
        encryption_spec_key_name=target.encryption_key,
    )
    return credentials


def build_job(
    target: VertexTarget,
    template_path: str | Path,
    parameter_values: dict[str, Any],
    display_name: str,
    credentials: Any = None,
) -> Any:
    """The aiplatform PipelineJob for the compiled template, not yet sent."""
    target.check()
    check_template_registry(template_path, parameter_values)
    from google.cloud import aiplatform

    credentials = init_client(target, credentials)
    return aiplatform.PipelineJob(
        display_name=display_name,
        template_path=str(template_path),
        pipeline_root=target.pipeline_root,
        parameter_values=parameter_values,
        enable_caching=target.enable_caching,
        labels=target.labels or None,
        encryption_spec_key_name=target.encryption_key,
        project=target.project,
        location=target.region,
        credentials=credentials,
    )


def check_template_registry(template_path: str | Path, parameter_values: dict[str, Any]) -> None:
    """Refuse a job whose pipeline would push to a registry inside a task's container."""
    from portside.pipelines.compile import parameter_definitions
    from portside.pipelines.profile import check_shared_registry

    definitions = parameter_definitions(template_path)
    if "tracking_uri" not in definitions:  # logs and publishes nowhere (batch scoring)
        return
    defaults = {k: v["defaultValue"] for k, v in definitions.items() if "defaultValue" in v}
    check_shared_registry(
        {**defaults, **parameter_values}, f"{template_path} with these parameters"
    )


def request_preview(job: Any, target: VertexTarget) -> str:
    """The CreatePipelineJob body as JSON, as --dry-run prints it."""
    from google.protobuf import json_format

    resource = job._gca_resource._pb  # the request body the client would send
    body = json.loads(json_format.MessageToJson(resource))
    body["serviceAccount"] = target.service_account
    if target.network:
        body["network"] = target.network
    return json.dumps(
        {"parent": f"projects/{target.project}/locations/{target.region}", "pipelineJob": body},
        indent=2,
    )


def submit(
    target: VertexTarget,
    template_path: str | Path,
    parameter_values: dict[str, Any],
    display_name: str,
    wait: bool = False,
    credentials: Any = None,
) -> str:
    """Create the pipeline job; with `wait`, follow it to the end. Returns its resource name."""
    job = build_job(target, template_path, parameter_values, display_name, credentials)
    with service_errors("submit the pipeline job"):
        job.submit(
            service_account=target.service_account,
            network=target.network,
            experiment=target.experiment,
        )
        if wait:
            job.wait()
    return job.resource_name


def schedule(
    target: VertexTarget,
    template_path: str | Path,
    parameter_values: dict[str, Any],
    display_name: str,
    cron: str,
    max_concurrent_runs: int = 1,
    credentials: Any = None,
) -> str:
    """A Vertex PipelineJobSchedule running the pipeline on `cron` (with optional TZ= prefix)."""
    if len(cron.replace("TZ=", "").split()) < 5:
        raise ConfigurationError(f"--cron {cron!r} is not a cron expression like '0 3 * * *'")
    job = build_job(target, template_path, parameter_values, display_name, credentials)
    with service_errors("create the schedule"):
        created = job.create_schedule(
            cron=cron,
            display_name=f"{display_name}-schedule",
            max_concurrent_run_count=max_concurrent_runs,
            service_account=target.service_account,
            network=target.network,
        )
    return created.resource_name


class service_errors:
    """Turns Google API errors into one clear line; `forbidden` is the hint for a 403."""

    def __init__(self, action: str, forbidden: str = "") -> None:
        self.action = action
        self.forbidden = forbidden or (
            "check that the caller and the service account have roles/aiplatform.user and "
            "access to the pipeline root bucket"
        )

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if error is None:
            return False
        from google.api_core import exceptions

        hints = {
            exceptions.Forbidden: self.forbidden,
            exceptions.NotFound: "check the project, region and that the Vertex AI API is enabled",
            exceptions.ResourceExhausted: "a quota is exhausted; see IAM & Admin > Quotas",
            exceptions.Unauthenticated: "run `gcloud auth application-default login`",
        }
        if isinstance(error, exceptions.GoogleAPICallError):
            hint = next((h for k, h in hints.items() if isinstance(error, k)), "")
            code = getattr(error, "code", "") or ""
            message = getattr(error, "message", str(error))
            raise PortsideError(
                f"Vertex AI could not {self.action} ({code} {type(error).__name__}): "
                f"{message}" + (f"; {hint}" if hint else "")
            ) from error
        return False
