"""`portside compile | run --local | submit | schedule`: the training pipeline's commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from components.errors import ConfigurationError
from pipelines.times import today_utc

DEFAULT_IR = "training.yaml"


def _pipeline_parameters(args: argparse.Namespace) -> dict[str, Any]:
    values: dict[str, Any] = {"entity_rows_uri": args.entity_rows}
    for pair in args.param or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigurationError(f"--param {pair!r} is not NAME=VALUE")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def _vertex_training(args: argparse.Namespace) -> Any:
    if not args.train_machine_type:
        return None
    from pipelines.training_pipeline import VertexTraining

    return VertexTraining(
        machine_type=args.train_machine_type,
        accelerator_type=args.train_accelerator_type or "",
        accelerator_count=args.train_accelerator_count,
    )


def _add_scale_out(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("scale-out: train as a Vertex AI custom training job")
    group.add_argument("--train-machine-type", help="e.g. n1-standard-16 (Vertex AI only)")
    group.add_argument("--train-accelerator-type", help="e.g. NVIDIA_TESLA_T4")
    group.add_argument("--train-accelerator-count", type=int, default=1)


def _compile(args: argparse.Namespace) -> int:
    from pipelines.compile import compile_pipeline

    path = compile_pipeline(args.output, image=args.image, vertex_training=_vertex_training(args))
    print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if not args.local:
        raise ConfigurationError("only --local runs here; use `portside submit` for Vertex AI")
    from pipelines.local_run import PIPELINE_RUN_FILE, run_local

    entity_rows = Path(args.entity_rows)
    if not entity_rows.is_file():
        raise ConfigurationError(
            f"{entity_rows}: entity rows not found (portside data generate writes them)"
        )
    parameters = _pipeline_parameters(args)
    parameters["entity_rows_uri"] = str(entity_rows.resolve())
    # Freshness is judged against the start of today (UTC) unless given: an explicit date
    # keeps validation, and so everything after it, cacheable for the day.
    parameters.setdefault("as_of", today_utc().isoformat())
    run = run_local(parameters, args.pipeline_root, None if args.no_cache else args.cache_dir)
    print(f"\n{'component':<10} {'status':<12} {'seconds':>8}")
    for task in run.tasks:
        print(f"{task['component']:<10} {task['status']:<12} {task['seconds']:>8.2f}")
    print(
        f"pipeline {run.status} in {run.seconds:.1f} s; lineage: {run.run_dir}/{PIPELINE_RUN_FILE}"
    )
    if run.error:
        print(f"error: {run.error}")
    return 0 if run.status == "succeeded" else 1


def _target(args: argparse.Namespace) -> Any:
    from pipelines.vertex import VertexTarget, parse_labels

    return VertexTarget(
        project=args.project,
        region=args.region,
        pipeline_root=args.pipeline_root,
        service_account=args.service_account,
        network=args.network,
        labels=parse_labels(args.label or []),
        enable_caching=args.caching,
        experiment=args.experiment,
        encryption_key=args.encryption_key,
        api_endpoint=args.api_endpoint,
    )


def _template(args: argparse.Namespace) -> Path:
    from pipelines.compile import compile_pipeline

    if args.template:
        return Path(args.template)
    return compile_pipeline(
        Path(args.work_dir) / DEFAULT_IR, image=args.image, vertex_training=_vertex_training(args)
    )


def _submit(args: argparse.Namespace) -> int:
    from pipelines import vertex

    target = _target(args)
    target.check()
    parameters = _pipeline_parameters(args)
    if args.dry_run:
        from google.auth.credentials import AnonymousCredentials

        # Nothing is sent, so no credentials are needed to show the request.
        job = vertex.build_job(
            target, _template(args), parameters, args.display_name, AnonymousCredentials()
        )
        print(vertex.request_preview(job, target))
        return 0
    name = vertex.submit(target, _template(args), parameters, args.display_name, wait=args.wait)
    print(f"submitted {name}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from pipelines import vertex

    target = _target(args)
    target.check()
    name = vertex.schedule(
        target,
        _template(args),
        _pipeline_parameters(args),
        args.display_name,
        cron=args.cron,
        max_concurrent_runs=args.max_concurrent_runs,
    )
    print(f"created schedule {name}")
    return 0


def _add_parameters(parser: argparse.ArgumentParser, entity_rows_default: str | None) -> None:
    parser.add_argument(
        "--entity-rows",
        default=entity_rows_default,
        required=entity_rows_default is None,
        help="labelled entity rows (Parquet)"
        + (f"; default {entity_rows_default}" if entity_rows_default else ", e.g. gs://..."),
    )
    parser.add_argument(
        "--param",
        action="append",
        metavar="NAME=VALUE",
        help="pipeline parameter, repeatable (epochs=3, min_roc_auc=0.8, as_of=2026-11-01, ...)",
    )


def _add_vertex_target(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", required=True)
    parser.add_argument("--region", required=True, help="e.g. us-central1")
    parser.add_argument("--pipeline-root", required=True, help="gs://BUCKET/PATH")
    parser.add_argument(
        "--service-account", required=True, help="NAME@PROJECT.iam.gserviceaccount.com"
    )
    parser.add_argument("--network", help="projects/NUMBER/global/networks/NAME (VPC peering)")
    parser.add_argument("--label", action="append", metavar="KEY=VALUE")
    parser.add_argument(
        "--caching",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="override the per-task caching compiled into the pipeline",
    )
    parser.add_argument("--experiment", help="Vertex AI Experiments name")
    parser.add_argument(
        "--encryption-key", help="CMEK: projects/P/locations/L/keyRings/R/cryptoKeys/K"
    )
    parser.add_argument("--display-name", default="portside-training")
    parser.add_argument("--template", help="compiled IR (default: compile now)")
    parser.add_argument("--image", help="component image (default: the versioned project image)")
    parser.add_argument("--work-dir", default="data", help="where to compile the IR to")
    parser.add_argument("--api-endpoint", help=argparse.SUPPRESS)  # private endpoints, tests
    _add_scale_out(parser)


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:
    comp = commands.add_parser("compile", help="compile the training pipeline to KFP IR YAML")
    comp.add_argument("-o", "--output", default=DEFAULT_IR)
    comp.add_argument("--image", help="component image (default: the versioned project image)")
    _add_scale_out(comp)
    comp.set_defaults(handler=_compile)

    run = commands.add_parser("run", help="run the training pipeline (--local: kfp.local here)")
    run.add_argument("--local", action="store_true", help="run with kfp.local on this machine")
    _add_parameters(run, "data/sources/transactions.parquet")
    run.add_argument("--pipeline-root", default="data/pipeline_runs")
    run.add_argument("--cache-dir", default="data/cache")
    run.add_argument("--no-cache", action="store_true")
    run.set_defaults(handler=_run)

    sub = commands.add_parser("submit", help="submit the pipeline to Vertex AI Pipelines")
    _add_parameters(sub, None)
    _add_vertex_target(sub)
    sub.add_argument("--dry-run", action="store_true", help="print the request, send nothing")
    sub.add_argument("--wait", action="store_true", help="follow the job to its end")
    sub.set_defaults(handler=_submit)

    sched = commands.add_parser("schedule", help="run the pipeline on Vertex AI on a cron schedule")
    _add_parameters(sched, None)
    _add_vertex_target(sched)
    sched.add_argument(
        "--cron", required=True, help="'0 3 * * *' or 'TZ=Europe/Amsterdam 0 3 * * *'"
    )
    sched.add_argument("--max-concurrent-runs", type=int, default=1)
    sched.set_defaults(handler=_schedule)
