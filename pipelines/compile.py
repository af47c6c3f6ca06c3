"""Compile the training pipeline to KFP IR YAML (Vertex AI Pipelines, any Kubeflow cluster)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipelines.training_pipeline import VertexTraining


def compile_pipeline(
    output: str | Path, image: str | None = None, vertex_training: VertexTraining | None = None
) -> Path:
    from kfp import compiler

    from pipelines.training_pipeline import create_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    pipeline = create_pipeline(image, vertex_training)
    compiler.Compiler().compile(pipeline, package_path=str(output))
    return output
