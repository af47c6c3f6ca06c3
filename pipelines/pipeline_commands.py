"""`portside compile | run --local | submit | schedule`: the training pipeline's commands."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from portside.components.errors import ConfigurationError
from portside.components.lineage import RUN_MANIFEST_FILE
from portside.components.registry import PIPELINE_ORDER
from portside.pipelines.profile_args import add_profile_arguments, profile_from_args
from portside.pipelines.progress import Ticker
from portside.pipelines.times import today_utc

DEFAULT_IR = "training.yaml"


def named_pairs(pairs: list[str], known: set[str] | dict, owner: str) -> dict[str, str]:
    """`--param NAME=VALUE` pairs by name, every NAME checked against `known` (`owner`: what
    has them, for the message)."""
    values: dict[str, str] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep:
            raise ConfigurationError(f"--param {pair!r} is not NAME=VALUE")
        if name not in known:
            names = ", ".join(sorted(known))
            raise ConfigurationError(f"--param {name}: {owner} has no such parameter ({names})")
        values[name] = raw
    return values


def coerce_parameters(pairs: list[str], definitions: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """`NAME=VALUE` pairs typed by the pipeline's declared parameters (compiled IR form)."""
    return {
        name: _coerce(name, raw, definitions[name]["parameterType"])
        for name, raw in named_pairs(pairs, definitions, "the pipeline").items()
    }


def _coerce(name: str, raw: str, kind: str) -> Any:
    try:
        if kind == "STRING":
            return raw
        if kind == "NUMBER_INTEGER":
            return int(raw)
        if kind == "NUMBER_DOUBLE":
            return float(raw)
        if kind == "BOOLEAN":
            return BOOLEANS[raw.strip().lower()]
        value = json.loads(raw)
        if isinstance(value, (list, dict)):
            return value
    except (ValueError, KeyError):
        pass
    expected = TYPE_NAMES.get(kind, kind)
    raise ConfigurationError(f"--param {name}={raw!r}: {name} is {expected}")


BOOLEANS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
TYPE_NAMES = {
    "NUMBER_INTEGER": "an integer",
    "NUMBER_DOUBLE": "a number",
    "BOOLEAN": "a boolean (true/false)",
    "LIST": "a JSON list",
    "STRUCT": "a JSON object",
}


def _pipeline_parameters(
    args: argparse.Namespace, definitions: dict[str, dict[str, Any]]
) -> dict[str, Any]:
    return {"entity_rows_uri": args.entity_rows, **coerce_parameters(args.param or [], definitions)}


def _vertex_training(args: argparse.Namespace) -> Any:
    if not args.train_machine_type:
        return None
    from portside.pipelines.training_pipeline import VertexTraining

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
    if args.tfx:
        from portside.pipelines.tfx_commands import compile_tfx

        if args.batch or args.train_machine_type:
            raise ConfigurationError("--tfx compiles the TFX training pipeline only")
        if not args.training_set_uri:
            raise ConfigurationError(
                "--tfx needs --training-set-uri: the features component's output folder "
                "(gs://...) that the TFX pipeline imports"
            )
        return compile_tfx(args)
    if args.batch:  # the batch scoring pipeline: one Vertex AI batch prediction job
        from portside.pipelines.batch_pipeline import DEFAULT_IR as BATCH_IR
        from portside.pipelines.batch_pipeline import compile_batch_pipeline

        if args.train_machine_type:
            raise ConfigurationError("--batch has no train step: drop --train-machine-type")
        print(f"wrote {compile_batch_pipeline(args.output or BATCH_IR, profile_from_args(args))}")
        return 0
    from portside.pipelines.compile import compile_pipeline

    output = args.output or DEFAULT_IR
    path = compile_pipeline(output, profile_from_args(args), vertex_training=_vertex_training(args))
    print(f"wrote {path}")
    return 0


def _run(args: argparse.Namespace) -> int:
    if args.tfx:
        from portside.pipelines.tfx_commands import run_tfx

        return run_tfx(args)
    if not args.local:
        raise ConfigurationError(
            "`portside run` runs the pipeline on this machine only: add --local (kfp.local, "
            "embedded defaults). To run it on Vertex AI, use `portside submit --profile "
            "deploy/profiles/production.yaml --entity-rows gs://BUCKET/rows.parquet` "
            "(or `portside schedule` for a cron schedule)"
        )
    from portside.components.common.tracking import resolve_tracking_uri
    from portside.pipelines.local_run import (
        PIPELINE_RUN_FILE,
        pipeline_parameter_definitions,
        run_local,
    )
    from portside.pipelines.run_report import render
    from portside.pipelines.training_pipeline import create_pipeline

    entity_rows = Path(args.entity_rows)
    if not entity_rows.is_file():
        raise ConfigurationError(
            f"{entity_rows}: entity rows not found (portside data generate writes them)"
        )
    pipeline = create_pipeline()
    parameters = _pipeline_parameters(args, pipeline_parameter_definitions(pipeline))
    parameters["entity_rows_uri"] = str(entity_rows.resolve())
    # Freshness is judged against the start of today (UTC) unless given: an explicit date
    # keeps validation, and so everything after it, cacheable for the day.
    parameters.setdefault("as_of", today_utc().isoformat())
    cache_dir = None if args.no_cache else args.cache_dir
    console = sys.stderr  # run_local sends kfp.local's own output to the run's logs
    root = Path(args.pipeline_root)
    root.mkdir(parents=True, exist_ok=True)
    watch = RunningStep(root)
    # With --verbose kfp.local's logs stream to the console: no live line over them.
    ticker = contextlib.nullcontext() if args.verbose else Ticker(watch.describe, console)
    with ticker:
        run = run_local(
            parameters,
            root,
            cache_dir,
            pipeline=pipeline,
            verbose=args.verbose,
            warm=not args.no_warm_worker,
        )
    tracking_uri = resolve_tracking_uri(str(run.parameters.get("tracking_uri", "")))
    for line in render(run, PIPELINE_ORDER, PIPELINE_RUN_FILE, tracking_uri):
        print(line)
    return 0 if run.status == "succeeded" else 1


class RunningStep:
    """What the live line says: the step whose run manifest says it is running (the runtime
    marks every output directory when a component starts), in the run folder kfp.local
    created under `root` after this was made."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.before = set(root.iterdir())

    def describe(self) -> str:
        new = [p for p in self.root.iterdir() if p not in self.before and p.is_dir()]
        if not new:
            return "starting the pipeline"
        run_dir = max(new, key=lambda p: p.stat().st_mtime)
        running, finished = [], set()
        for path in run_dir.rglob(RUN_MANIFEST_FILE):
            try:
                manifest = json.loads(path.read_text())
            except (OSError, ValueError):  # being replaced right now
                continue
            if manifest.get("status") == "running":
                running.append(manifest["component"])
            else:
                finished.add(manifest.get("component"))
        done = f"{len(finished)} of {len(PIPELINE_ORDER)} done"
        if not running:
            return f"pipeline: {done}"
        return f"pipeline: {', '.join(sorted(set(running)))} running, {done}"


def _target(args: argparse.Namespace, profile: Any) -> Any:
    """The profile's Vertex AI settings; flags given on the command line win."""
    from portside.pipelines.vertex import VertexTarget, parse_labels

    vertex = profile.vertex
    return VertexTarget(
        project=args.project or vertex.project,
        region=args.region or vertex.region,
        pipeline_root=args.pipeline_root or vertex.pipeline_root,
        service_account=args.service_account
        if args.service_account is not None
        else vertex.service_account,
        network=args.network or vertex.network,
        labels={**vertex.labels, **parse_labels(args.label or [])},
        enable_caching=args.caching,
        experiment=args.experiment or vertex.experiment,
        encryption_key=args.encryption_key or vertex.encryption_key,
        api_endpoint=args.api_endpoint or vertex.api_endpoint,
    )


def _template(args: argparse.Namespace, profile: Any) -> Path:
    from portside.pipelines.compile import compile_pipeline

    if args.template:
        return Path(args.template)
    return compile_pipeline(
        Path(args.work_dir) / DEFAULT_IR, profile, vertex_training=_vertex_training(args)
    )


def _prepare(args: argparse.Namespace) -> tuple[Any, Path, dict[str, Any]]:
    """Target, template and typed parameters of a submit or schedule, checked."""
    from portside.pipelines.compile import parameter_definitions

    profile = profile_from_args(args)
    target = _target(args, profile)
    target.check()
    template = _template(args, profile)
    return target, template, _pipeline_parameters(args, parameter_definitions(template))


def _submit(args: argparse.Namespace) -> int:
    from portside.pipelines import vertex

    target, template, parameters = _prepare(args)
    if args.dry_run:
        from google.auth.credentials import AnonymousCredentials

        # Nothing is sent, so no credentials are needed to show the request.
        job = vertex.build_job(
            target, template, parameters, args.display_name, AnonymousCredentials()
        )
        print(vertex.request_preview(job, target))
        return 0
    name = vertex.submit(target, template, parameters, args.display_name, wait=args.wait)
    print(f"submitted {name}")
    return 0


def _schedule(args: argparse.Namespace) -> int:
    from portside.pipelines import vertex

    target, template, parameters = _prepare(args)
    name = vertex.schedule(
        target,
        template,
        parameters,
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
    # Each of these overrides the profile's `vertex` section.
    parser.add_argument("--project")
    parser.add_argument("--region", help="e.g. us-central1")
    parser.add_argument("--pipeline-root", help="gs://BUCKET/PATH")
    parser.add_argument("--service-account", help="NAME@PROJECT.iam.gserviceaccount.com")
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
    add_profile_arguments(parser)
    parser.add_argument("--work-dir", default="data", help="where to compile the IR to")
    parser.add_argument("--api-endpoint", help=argparse.SUPPRESS)  # private endpoints, tests
    _add_scale_out(parser)


def add_pipeline_commands(commands: argparse._SubParsersAction) -> None:
    comp = commands.add_parser("compile", help="compile the training pipeline to KFP IR YAML")
    comp.add_argument("-o", "--output", help=f"default {DEFAULT_IR} (--batch: batch.yaml)")
    comp.add_argument(
        "--batch",
        action="store_true",
        help="the batch scoring pipeline instead (a Vertex AI batch prediction job)",
    )
    comp.add_argument(
        "--tfx",
        action="store_true",
        help="the TFX pipeline instead (KubeflowV2 JSON for Vertex AI; needs .venv-tfx); "
        "--image then names the TFX image",
    )
    comp.add_argument(
        "--training-set-uri", help="--tfx: the features component's output folder (gs://...)"
    )
    add_profile_arguments(comp)
    _add_scale_out(comp)
    comp.set_defaults(handler=_compile)

    run = commands.add_parser("run", help="run the training pipeline (--local: kfp.local here)")
    run.add_argument("--local", action="store_true", help="run with kfp.local on this machine")
    run.add_argument(
        "--tfx",
        action="store_true",
        help="run the TFX pipeline on LocalDagRunner (features here, then TFX in .venv-tfx)",
    )
    _add_parameters(run, "data/sources/transactions.parquet")
    run.add_argument("--pipeline-root", default="data/pipeline_runs")
    run.add_argument("--cache-dir", default="data/cache")
    run.add_argument("--no-cache", action="store_true")
    run.add_argument(
        "--verbose", action="store_true", help="stream kfp.local's and every task's logs"
    )
    run.add_argument(
        "--no-warm-worker",
        action="store_true",
        help="run every task as its own subprocess, as plain kfp.local does (slower: each "
        "task imports the heavy libraries again)",
    )
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
