"""The TFX training pipeline, wired once for LocalDagRunner and KubeflowV2DagRunner (Vertex AI):

    TrainingSetExampleGen -> StatisticsGen -> SchemaGen -> ExampleValidator   (TFX's own)
                          -> PortsideValidate -> PortsideTrain -> PortsideEvaluate -> PortsidePush

The training set is the one the `features` component wrote (Feast cannot live in the TFX
environment). TFX's data validation runs beside Portside's Great Expectations gate, which is the
gate: a failed suite stops the pipeline at PortsideValidate and nothing is pushed. (With the
schema SchemaGen infers from the same statistics, ExampleValidator flags little; a curated
schema, imported with ImportSchemaGen, makes it a check of its own.) Portside's
blessing (overall metrics, explicit margin against the champion) decides the push, not TFX's
per-slice change thresholds.

Runs in the TFX environment: `python -m portside.pipelines.tfx_pipeline run|compile ...`, which
`portside run --tfx` and `portside compile --tfx` start in .venv-tfx.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any

from portside.components.image import tfx_image
from portside.pipelines.training_pipeline import PipelineDefaults

PIPELINE_NAME = "portside-training-tfx"


def spec_default(component: str, parameter: str) -> Any:
    """A parameter's default as the component's spec declares it (one place for it)."""
    from portside.components.registry import get_spec

    return next(p.default for p in get_spec(component).parameters if p.name == parameter)


@dataclass(frozen=True)
class TfxPipelineSettings:
    """What one TFX pipeline run is made of: the features component's output, where TFX keeps
    its artifacts, and the Portside steps' parameters (the KFP pipeline's defaults)."""

    training_set_uri: str
    pipeline_root: str
    expectation_suite: str = PipelineDefaults.expectation_suite
    as_of: str = ""
    serving_output: str = PipelineDefaults.serving_output
    epochs: int = spec_default("train", "epochs")
    seed: int = spec_default("train", "seed")
    min_roc_auc: float = spec_default("evaluate", "min_roc_auc")
    min_pr_auc: float = spec_default("evaluate", "min_pr_auc")
    max_regression: float = spec_default("evaluate", "max_regression")
    model_name: str = PipelineDefaults.model_name
    tracking_uri: str = PipelineDefaults.tracking_uri
    registry: str = PipelineDefaults.registry
    vertex_project: str = PipelineDefaults.vertex_project
    vertex_location: str = PipelineDefaults.vertex_location
    vertex_api_endpoint: str = PipelineDefaults.vertex_api_endpoint
    # Portside's cache (local folder, or /gcs/... on Vertex AI); empty: every step runs.
    portside_cache_dir: str = PipelineDefaults.portside_cache_dir
    # LocalDagRunner's ML Metadata store (SQLite); empty for a compiled pipeline (Vertex's own).
    metadata_path: str = ""


def create_pipeline(settings: TfxPipelineSettings) -> Any:
    """The tfx.dsl.Pipeline; the same object LocalDagRunner runs and KubeflowV2 compiles."""
    from tfx import v1 as tfx

    from portside.pipelines.tfx_components import tfx_components

    steps = tfx_components()
    cache = {"portside_cache_dir": settings.portside_cache_dir}
    examples = steps["examples"](training_set_uri=settings.training_set_uri)
    statistics = tfx.components.StatisticsGen(examples=examples.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"])
    anomalies = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    )
    validate = steps["validate"](
        training_set=examples.outputs["examples"],
        suite=settings.expectation_suite,
        as_of=settings.as_of,
        **cache,
    )
    train = steps["train"](
        training_set=examples.outputs["examples"],
        validation=validate.outputs["validation"],
        epochs=settings.epochs,
        seed=settings.seed,
        output_name=settings.serving_output,
        tracking_uri=settings.tracking_uri,
        **cache,
    )
    registry = dict(
        registry=settings.registry,
        model_name=settings.model_name,
        tracking_uri=settings.tracking_uri,
        vertex_project=settings.vertex_project,
        vertex_location=settings.vertex_location,
        vertex_api_endpoint=settings.vertex_api_endpoint,
    )
    evaluate = steps["evaluate"](
        model=train.outputs["model"],
        training_set=examples.outputs["examples"],
        validation=validate.outputs["validation"],
        min_roc_auc=settings.min_roc_auc,
        min_pr_auc=settings.min_pr_auc,
        max_regression=settings.max_regression,
        **registry,
        **cache,
    )
    push = steps["push"](
        model=train.outputs["model"], evaluation=evaluate.outputs["evaluation"], **registry, **cache
    )
    metadata = None
    if settings.metadata_path:
        Path(settings.metadata_path).parent.mkdir(parents=True, exist_ok=True)
        metadata = tfx.orchestration.metadata.sqlite_metadata_connection_config(
            settings.metadata_path
        )
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=settings.pipeline_root,
        components=[examples, statistics, schema, anomalies, validate, train, evaluate, push],
        metadata_connection_config=metadata,
        enable_cache=False,  # Portside's cache instead (see pipelines.tfx_components)
    )


def run_local(settings: TfxPipelineSettings) -> None:
    """Run on LocalDagRunner (one process, SQLite ML Metadata); raises at the failed step."""
    from tfx import v1 as tfx

    if not settings.metadata_path:
        raise ValueError("a local TFX run needs metadata_path (its ML Metadata SQLite file)")
    tfx.orchestration.LocalDagRunner().run(create_pipeline(settings))


def compile_for_vertex(settings: TfxPipelineSettings, output: Path, image: str) -> Path:
    """The KubeflowV2 (Vertex AI Pipelines) job spec JSON; every step runs in `image`."""
    from tfx import v1 as tfx

    output.parent.mkdir(parents=True, exist_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=str(output.parent),
        output_filename=output.name,
    )
    runner.run(create_pipeline(settings), write_out=True)
    return output


def lineage(metadata_path: str) -> dict[str, Any]:
    """ML Metadata's graph of a local run, as plain data: executions (the node that ran, its
    state), artifacts (type, URI, custom properties) and the events joining them."""
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    if not Path(metadata_path).is_file():
        raise FileNotFoundError(f"{metadata_path}: no ML Metadata store (run the pipeline first)")
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    store = metadata_store.MetadataStore(config)
    artifact_types = {t.id: t.name for t in store.get_artifact_types()}
    context_types = {t.id: t.name for t in store.get_context_types()}
    executions = []
    for execution in store.get_executions():
        nodes = [
            c.name.split(".")[-1]
            for c in store.get_contexts_by_execution(execution.id)
            if context_types[c.type_id] == "node"
        ]
        state = metadata_store_pb2.Execution.State.Name(execution.last_known_state)
        executions.append({"id": execution.id, "node": nodes[0] if nodes else "", "state": state})
    artifacts = [
        {
            "id": artifact.id,
            "type": artifact_types[artifact.type_id],
            "uri": artifact.uri,
            "properties": {key: _plain(value) for key, value in artifact.custom_properties.items()},
        }
        for artifact in store.get_artifacts()
    ]
    events = [
        {
            "execution": event.execution_id,
            "artifact": event.artifact_id,
            "type": metadata_store_pb2.Event.Type.Name(event.type),
        }
        for event in store.get_events_by_execution_ids([e["id"] for e in executions])
    ]
    return {"executions": executions, "artifacts": artifacts, "events": events}


def _plain(value: Any) -> Any:
    """An ML Metadata Value as the int, float or string it holds."""
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind in ("int_value", "double_value", "string_value") else None


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m portside.pipelines.tfx_pipeline")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run on LocalDagRunner with SQLite ML Metadata")
    comp = sub.add_parser("compile", help="compile for Vertex AI (KubeflowV2DagRunner)")
    comp.add_argument("--output", required=True, type=Path)
    comp.add_argument("--image", default=tfx_image())
    graph = sub.add_parser("lineage", help="print a local run's ML Metadata graph as JSON")
    graph.add_argument("--metadata-path", required=True)
    for command in (run, comp):
        for item in fields(TfxPipelineSettings):
            flag = "--" + item.name.replace("_", "-")
            if item.type == "bool":
                command.add_argument(flag, type=lambda v: v.lower() == "true", default=item.default)
            elif item.default is MISSING:
                command.add_argument(flag, required=True)
            else:
                kind = {"int": int, "float": float}.get(str(item.type), str)
                command.add_argument(flag, type=kind, default=item.default)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(_parser().parse_args(argv))
    if args["command"] == "lineage":
        print(json.dumps(lineage(args["metadata_path"]), indent=1))
        return 0
    command, output, image = args.pop("command"), args.pop("output", None), args.pop("image", None)
    settings = TfxPipelineSettings(**args)
    if command == "run":
        run_local(settings)
        print(f"tfx: pipeline {PIPELINE_NAME} succeeded; ML Metadata in {settings.metadata_path}")
    else:
        print(f"wrote {compile_for_vertex(settings, output, image)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
