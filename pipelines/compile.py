"""Compile the training pipeline to KFP IR YAML (Vertex AI Pipelines, any Kubeflow cluster)."""

from __future__ import annotations

from pathlib import Path


def compile_pipeline(output: str | Path, image: str | None = None) -> Path:
    from kfp import compiler

    from pipelines.training_pipeline import create_pipeline

    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(create_pipeline(image), package_path=str(output))
    return output
