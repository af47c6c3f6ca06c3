"""The `portside` command. Subcommands import their heavy libraries only when they run."""

from __future__ import annotations

import argparse
import contextlib
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

from portside.components.errors import ConfigurationError, PortsideError
from portside.pipelines.cache_commands import add_cache_commands
from portside.pipelines.deploy_commands import add_deploy_commands
from portside.pipelines.expectation_commands import add_expectation_commands
from portside.pipelines.monitor_commands import add_monitor_commands
from portside.pipelines.pipeline_commands import add_pipeline_commands
from portside.pipelines.progress import Ticker, is_terminal
from portside.pipelines.serving_commands import add_serving_commands
from portside.pipelines.times import parse_timestamp, today_utc

DEFAULT_REPO = "feature_repo"


def _long_step(label: str, quiet: bool) -> tuple[bool, contextlib.AbstractContextManager]:
    """(draw the library's progress bar?, the context to run a long step in): a bar on a
    terminal, a heartbeat line elsewhere (CI logs), neither with --quiet."""
    if quiet:
        return False, contextlib.nullcontext()
    if is_terminal(sys.stderr):
        return True, contextlib.nullcontext()
    return False, Ticker(lambda: label, sys.stderr)


def _data_generate(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from portside.synthetic_data import DriftScenario, SyntheticDataConfig, generate

    end = args.end or today_utc()
    drift = DriftScenario(start=end - timedelta(days=args.drift_days)) if args.drift_days else None
    config = SyntheticDataConfig(
        transactions=args.transactions,
        users=args.users,
        days=args.days,
        end=end,
        seed=args.seed,
        fraud_rate=args.fraud_rate,
        drift=drift,
    )
    try:
        config.validate()
    except ValueError as error:  # the field it names is a flag here
        raise ConfigurationError(f"data generate: {error}") from error
    bar, step = _long_step("generating data", args.quiet)
    with step:
        data = generate(config, Path(args.out), progress=bar)
    tables = ", ".join(f"{name} {rows:,}" for name, rows in data.rows.items())
    print(f"data: {tables} rows; fraud rate {data.fraud_rate:.2%} -> {data.out_dir}")
    if drift is not None:
        print(f"data: drifted from {drift.start.isoformat()} ({drift.new_category!r} new)")
    return 0


def _features_apply(args: argparse.Namespace) -> int:
    from portside.pipelines.feast_apply import apply_repo

    changes = apply_repo(args.repo, skip_source_validation=args.skip_source_validation)
    if args.verbose:
        print(changes.feast_output.rstrip())
    for line in changes.summary():
        print(line)
    return 0


def _features_materialize(args: argparse.Namespace) -> int:
    from portside.components.features.materialize import materialize, materialize_incremental

    views = args.views.split(",") if args.views else None
    end = args.end or datetime.now(timezone.utc)
    if not args.incremental and args.start is None:
        raise PortsideError("--start is required unless --incremental is given")
    bar, step = _long_step("materializing", args.quiet)
    with step:
        if args.incremental:
            done = materialize_incremental(args.repo, end, views, progress=bar, mode=args.mode)
        else:
            done = materialize(args.repo, args.start, end, views, progress=bar, mode=args.mode)
    for view in done:
        print(
            f"materialized {view.name}: {view.rows:,} entities from {view.start:%Y-%m-%d %H:%M} "
            f"to {view.end:%Y-%m-%d %H:%M} in {view.seconds:.2f} s"
        )
    return 0


def _features_lookup(args: argparse.Namespace) -> int:
    from portside.components.features.online import lookup

    rows = [
        {"user_id": user, "amount": args.amount, "merchant_category": args.merchant_category}
        for user in args.user_id
    ]
    # One column per user reads better than one very wide row per user.
    print(lookup(args.repo, args.feature_service, rows).set_index("user_id").T.to_string())
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from portside.components.push.registry import HASH_TAG, Registry, is_complete

    registry = Registry(args.tracking_uri, args.model_name)
    versions = registry.versions()
    if not versions:
        print(f"no versions of {args.model_name!r} in {registry.tracking_uri}")
        return 0
    by_version: dict[str, list[str]] = {}
    for alias, version in registry.aliases().items():
        by_version.setdefault(version, []).append(alias)
    print(f"{'version':>7}  {'aliases':<12} {'state':<10} {'content':<12}  created (UTC)")
    for v in versions:
        created = f"{datetime.fromtimestamp(v.creation_timestamp / 1000, timezone.utc):%F %T}"
        aliases = ",".join(sorted(by_version.get(str(v.version), []))) or "-"
        state = "complete" if is_complete(v) else "incomplete"
        content = v.tags.get(HASH_TAG, "?")[:12]
        print(f"{v.version:>7}  {aliases:<12} {state:<10} {content:<12}  {created}")
    history = registry.history()
    print(f"champion history: {' -> '.join(history) if history else '(none)'}")
    return 0


def _models_promote(args: argparse.Namespace) -> int:
    from portside.components.push.registry import Registry

    previous = Registry(args.tracking_uri, args.model_name).promote(args.version)
    if previous == args.version:
        print(f"{args.model_name}: v{args.version} is already the champion")
    else:
        print(f"{args.model_name}: champion v{previous or '-'} -> v{args.version}")
    return 0


def _models_rollback(args: argparse.Namespace) -> int:
    from portside.components.push.registry import Registry

    current, previous = Registry(args.tracking_uri, args.model_name).rollback()
    print(f"{args.model_name}: champion rolled back v{current} -> v{previous}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="portside", description="Portside: reusable ML pipeline components and their runs."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="synthetic source data").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    gen = data.add_parser("generate", help="write synthetic card transactions as Parquet")
    gen.add_argument("--transactions", type=int, default=200_000, help="number of transactions")
    gen.add_argument("--users", type=int, default=None, help="default: transactions / 100")
    gen.add_argument("--days", type=int, default=90, help="length of the window in days")
    gen.add_argument(
        "--end", type=parse_timestamp, default=None, help="window end (default: today)"
    )
    gen.add_argument("--seed", type=int, default=7)
    gen.add_argument("--fraud-rate", type=float, default=0.03)
    gen.add_argument(
        "--drift-days",
        type=float,
        default=0,
        help="the last N days drift (higher amounts, a new merchant category, a changed fraud "
        "pattern): the monitoring demo's data",
    )
    gen.add_argument("--out", default="data/sources", help="output directory")
    gen.add_argument("--quiet", action="store_true", help="no progress bar")
    gen.set_defaults(handler=_data_generate)

    features = commands.add_parser("features", help="the Feast feature store").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    apply = features.add_parser(
        "apply", help="`feast apply` in the repo, summarised: what it created, changed, deleted"
    )
    apply.add_argument("--repo", default=DEFAULT_REPO, help="Feast repo path")
    apply.add_argument(
        "--skip-source-validation", action="store_true", help="as `feast apply` takes it"
    )
    apply.add_argument("--verbose", action="store_true", help="print Feast's own output too")
    apply.set_defaults(handler=_features_apply)

    mat = features.add_parser("materialize", help="load the latest features into the online store")
    mat.add_argument("--start", type=parse_timestamp, help="interval start (ISO)")
    mat.add_argument("--end", type=parse_timestamp, help="interval end (ISO, default: now)")
    mat.add_argument(
        "--incremental", action="store_true", help="from where the last run ended (or end - ttl)"
    )
    mat.add_argument("--views", help="comma-separated feature views (default: all online)")
    mat.add_argument(
        "--mode",
        choices=("landed", "feast"),
        default="landed",
        help="landed: rows that became available (event and created time passed) in the "
        "interval, so late and backfilled rows reach the online store (default); feast: by "
        "event time only, as `feast materialize`",
    )
    mat.add_argument("--repo", default=DEFAULT_REPO, help="Feast repo path")
    mat.add_argument("--quiet", action="store_true", help="no progress bar")
    mat.set_defaults(handler=_features_materialize)

    look = features.add_parser("lookup", help="online features for users, as serving sees them")
    look.add_argument("--user-id", type=int, nargs="+", required=True)
    look.add_argument("--amount", type=float, default=100.0, help="request-time amount")
    look.add_argument("--merchant-category", default="online_retail")
    look.add_argument("--feature-service", default="fraud_model_v1")
    look.add_argument("--repo", default=DEFAULT_REPO, help="Feast repo path")
    look.set_defaults(handler=_features_lookup)

    models = commands.add_parser(
        "models", help="the MLflow model registry: versions and the champion"
    ).add_subparsers(dest="action", required=True, metavar="ACTION")
    registry_options = argparse.ArgumentParser(add_help=False)
    registry_options.add_argument("--model-name", default="fraud_model")
    registry_options.add_argument(
        "--tracking-uri", default="", help="MLflow URI or SQLite file (default: data/mlflow)"
    )
    listing = models.add_parser(
        "list", parents=[registry_options], help="versions, aliases, complete or not"
    )
    listing.set_defaults(handler=_models_list)
    promote = models.add_parser(
        "promote", parents=[registry_options], help="make a complete version the champion"
    )
    promote.add_argument("version", help="model version number")
    promote.set_defaults(handler=_models_promote)
    rollback = models.add_parser(
        "rollback", parents=[registry_options], help="move the champion back to the previous one"
    )
    rollback.set_defaults(handler=_models_rollback)

    add_pipeline_commands(commands)
    add_serving_commands(commands)
    add_deploy_commands(commands)
    add_cache_commands(commands)
    add_expectation_commands(commands)
    add_monitor_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except PortsideError as error:
        print(f"portside: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # a library's error: keep the details, end with one line
        traceback.print_exc()
        print(f"portside: {type(error).__name__}: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
