"""`portside deploy --vertex`: the prediction server onto a Vertex AI endpoint with a traffic
split (pipelines/vertex_deploy.py). KServe is a manifest, not a command: deploy/serving/."""

from __future__ import annotations

import argparse
import json
from typing import Any

from portside.components.errors import ConfigurationError
from portside.pipelines.profile_args import add_profile_arguments, profile_from_args

KSERVE_HINT = "KServe: kubectl apply -k deploy/k8s/overlays/prod"


def _rollout(args: argparse.Namespace, model_name: str) -> Any:
    from portside.pipelines.vertex_deploy import Rollout

    return Rollout(
        endpoint=args.endpoint or model_name,
        display_name=args.display_name or f"{model_name}-server",
        traffic_percent=args.traffic_percent,
        machine_type=args.machine_type,
        min_replicas=args.min_replicas,
        max_replicas=args.max_replicas,
    )


def _deploy_profile(args: argparse.Namespace) -> Any:
    """The profile with the command line's Vertex AI settings over its `vertex` section."""
    profile = profile_from_args(args)
    flags = {
        "project": args.project,
        "region": args.region,
        "service_account": args.service_account,
        "api_endpoint": args.api_endpoint,
    }
    given = {name: value for name, value in flags.items() if value is not None}
    return profile.model_copy(update={"vertex": profile.vertex.model_copy(update=given)})


def _deploy(args: argparse.Namespace) -> int:
    from portside.pipelines import vertex_deploy

    if not args.vertex:
        raise ConfigurationError(
            f"`portside deploy` deploys to Vertex AI: add --vertex ({KSERVE_HINT})"
        )
    profile = _deploy_profile(args)
    rollout = _rollout(args, profile.registry.model_name)
    if args.dry_run:
        vertex_deploy.check(profile, rollout)
        print(json.dumps(_preview(profile, rollout), indent=2))
        return 0
    done = vertex_deploy.deploy(profile, rollout)
    print(f"champion: {profile.registry.model_name} v{done.champion}")
    print(f"uploaded {done.model} ({profile.image_name()})")
    print(f"endpoint {done.endpoint}" + (" (created)" if done.created_endpoint else ""))
    by_share = sorted(done.traffic.items(), key=lambda item: (-item[1], item[0]))
    split = ", ".join(f"{name} {percent}%" for name, percent in by_share)
    print(f"deployed {done.deployed_model}; traffic: {split}")
    return 0


def _preview(profile: Any, rollout: Any) -> dict[str, Any]:
    """What would be sent; nothing is read, so the champion and the endpoint's current split
    are named, not looked up."""
    from portside.pipelines.vertex_deploy import deploy_arguments, upload_arguments

    vertex = profile.vertex
    return {
        "location": f"projects/{vertex.project}/locations/{vertex.region}",
        "champion": f"{profile.registry.kind} {profile.registry.model_name}@champion",
        "upload": upload_arguments(profile, rollout, None),
        "endpoint": rollout.endpoint,
        "deploy": {
            **deploy_arguments(profile, rollout, rollout.traffic_percent),
            "note": "100% when the endpoint has no deployed model; the deployed ones share "
            "the rest in their current proportions",
        },
    }


def add_deploy_commands(commands: argparse._SubParsersAction) -> None:
    dep = commands.add_parser(
        "deploy",
        help="deploy the prediction server to a Vertex AI endpoint (canary traffic split)",
        description="Upload the server (component image, `python -m portside.components serve`) "
        f"as a new model version and deploy it beside the current one(s). {KSERVE_HINT}",
    )
    dep.add_argument("--vertex", action="store_true", help="deploy to Vertex AI (required)")
    add_profile_arguments(dep)
    dep.add_argument(
        "--endpoint",
        help="endpoint display name (created if missing) or resource name "
        "(default: the model name)",
    )
    dep.add_argument(
        "--display-name", help="the server's model in the registry (default: MODEL-server)"
    )
    dep.add_argument(
        "--traffic-percent",
        type=int,
        default=10,
        help="the new version's share of the traffic; the rest stays on the deployed ones "
        "(default 10; 100 on an empty endpoint)",
    )
    dep.add_argument("--machine-type", default="n1-standard-4")
    dep.add_argument("--min-replicas", type=int, default=1)
    dep.add_argument("--max-replicas", type=int, default=3)
    # Each of these overrides the profile's `vertex` section.
    dep.add_argument("--project")
    dep.add_argument("--region", help="e.g. europe-west4")
    dep.add_argument(
        "--service-account", help="the replicas run as NAME@PROJECT.iam.gserviceaccount.com"
    )
    dep.add_argument("--api-endpoint", help=argparse.SUPPRESS)  # private endpoints, tests
    dep.add_argument(
        "--dry-run", action="store_true", help="print what would be sent, send nothing"
    )
    dep.set_defaults(handler=_deploy)
