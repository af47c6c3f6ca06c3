"""Compile the training pipeline to KFP IR YAML (Vertex AI Pipelines, any Kubeflow cluster).

A compiled pipeline is meant to run somewhere else, so it always takes a production profile:
in-image paths, a shared model registry, the Feast connections and the jobs' identity.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.errors import ConfigurationError
from portside.pipelines.kfp_import import import_kfp

if TYPE_CHECKING:
    from portside.pipelines.profile import Profile
    from portside.pipelines.training_pipeline import VertexTraining


def compile_pipeline(
    output: str | Path,
    profile: Profile,
    vertex_training: VertexTraining | None = None,
) -> Path:
    import_kfp()
    from kfp import compiler

    from portside.pipelines.training_pipeline import create_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = create_pipeline(
        profile.image.name or None,
        vertex_training,
        defaults=profile.pipeline_defaults(),
        jobs=profile.job_settings(),
    )
    compiler.Compiler().compile(pipeline, package_path=str(output))
    return output


def parameter_definitions(template: str | Path) -> dict[str, dict[str, Any]]:
    """The compiled pipeline's parameters: {name: {"parameterType": ..., "defaultValue"?: ...}}.

    A KFP IR YAML, or a PipelineJob JSON (the TFX pipeline's KubeflowV2 output), which holds
    the spec under `pipelineSpec`."""
    import yaml

    path = Path(template)
    if not path.is_file():
        raise ConfigurationError(f"{path}: compiled pipeline not found (portside compile)")
    try:
        spec = yaml.safe_load(path.read_text())
        spec = spec.get("pipelineSpec", spec)
        return dict(spec["root"].get("inputDefinitions", {}).get("parameters", {}))
    except (yaml.YAMLError, KeyError, TypeError, AttributeError) as error:
        raise ConfigurationError(f"{path}: not a compiled KFP pipeline ({error})") from error
