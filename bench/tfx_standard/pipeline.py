"""The standard TFX pipeline, the peer in bench/tfx.py; runs in the TFX environment:

    .venv-tfx/bin/python -m bench.tfx_standard.pipeline --data DIR --root DIR ...

CsvExampleGen (DIR/train/*.csv and DIR/eval/*.csv: the splits are given, cut by event time as
Portside cuts them) -> StatisticsGen -> SchemaGen -> ExampleValidator -> Transform -> Trainer ->
Evaluator (against the latest blessed model) -> Pusher (filesystem), on LocalDagRunner with
SQLite ML Metadata and TFX's cache on (a rerun on the same root is the cached case).
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

MODULE_FILE = Path(__file__).resolve().parent / "module" / "fraud_standard_module.py"
PIPELINE_NAME = "standard-fraud-tfx"


def create_pipeline(args: argparse.Namespace):
    import tensorflow_model_analysis as tfma
    from tfx import v1 as tfx

    splits = [
        tfx.proto.Input.Split(name="train", pattern="train/*"),
        tfx.proto.Input.Split(name="eval", pattern="eval/*"),
    ]
    examples = tfx.components.CsvExampleGen(
        input_base=str(Path(args.data).resolve()), input_config=tfx.proto.Input(splits=splits)
    )
    statistics = tfx.components.StatisticsGen(examples=examples.outputs["examples"])
    schema = tfx.components.SchemaGen(statistics=statistics.outputs["statistics"])
    anomalies = tfx.components.ExampleValidator(
        statistics=statistics.outputs["statistics"], schema=schema.outputs["schema"]
    )
    config = {
        "label": args.label,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "hidden_units": args.hidden_units,
        "seed": args.seed,
    }
    transform = tfx.components.Transform(
        examples=examples.outputs["examples"],
        schema=schema.outputs["schema"],
        module_file=str(MODULE_FILE),
        custom_config=config,
    )
    trainer = tfx.components.Trainer(
        module_file=str(MODULE_FILE),
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema.outputs["schema"],
        train_args=tfx.proto.TrainArgs(
            num_steps=args.epochs * math.ceil(args.train_rows / args.batch_size)
        ),
        eval_args=tfx.proto.EvalArgs(num_steps=math.ceil(args.eval_rows / args.batch_size)),
        custom_config=config,
    )
    baseline = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    auc = tfma.MetricConfig(
        class_name="AUC",
        threshold=tfma.MetricThreshold(
            value_threshold=tfma.GenericValueThreshold(lower_bound={"value": args.min_auc}),
            change_threshold=tfma.GenericChangeThreshold(
                direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -1e-10}
            ),
        ),
    )
    eval_config = tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_default", label_key=args.label)],
        slicing_specs=[tfma.SlicingSpec()],
        metrics_specs=[tfma.MetricsSpec(metrics=[auc])],
    )
    evaluator = tfx.components.Evaluator(
        examples=examples.outputs["examples"],
        model=trainer.outputs["model"],
        baseline_model=baseline.outputs["model"],
        eval_config=eval_config,
    )
    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(Path(args.serving_dir).resolve())
            )
        ),
    )
    components = [
        examples, statistics, schema, anomalies, transform, trainer, baseline, evaluator, pusher
    ]  # fmt: skip
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=str(Path(args.root).resolve()),
        components=components,
        enable_cache=True,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(Path(args.metadata).resolve())
        ),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.tfx_standard.pipeline")
    parser.add_argument("--data", required=True, help="folder with train/ and eval/ CSV files")
    parser.add_argument("--root", required=True, help="pipeline root")
    parser.add_argument("--metadata", required=True, help="ML Metadata SQLite file")
    parser.add_argument("--serving-dir", required=True, help="Pusher's destination")
    parser.add_argument("--label", required=True)
    parser.add_argument("--train-rows", type=int, required=True)
    parser.add_argument("--eval-rows", type=int, required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--hidden-units", default="64,32")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--min-auc", type=float, default=0.5)
    args = parser.parse_args(argv)
    # What TFX 1.16 needs here (deploy/tfx/pyproject.toml): Keras 2, no pip packaging.
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("UNSUPPORTED_DO_NOT_PACKAGE_USER_MODULES", "1")
    from tfx import v1 as tfx

    tfx.orchestration.LocalDagRunner().run(create_pipeline(args))


if __name__ == "__main__":
    main()
