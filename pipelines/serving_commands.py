"""`portside predict` (one online prediction from the command line) and `portside serve` (the
HTTP prediction server, `components.serve`, with the worked example's model name as default).

Both read online features from Feast (the same FeatureService as training) plus the request
fields, and score them with the registry's champion through its exported serving signature.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from portside.components.errors import ConfigurationError
from portside.components.push.champion import CHAMPION

SERVER_START_TIMEOUT_S = 180.0


def _predict(args: argparse.Namespace) -> int:
    from portside.components.common.model_io import FeatureSpec, predict
    from portside.components.features.online import lookup
    from portside.components.push.registry import Registry

    registry = Registry(args.tracking_uri, args.model_name)
    champion = registry.champion()
    if champion is None:
        raise ConfigurationError(
            f"model {args.model_name!r} has no champion yet; `portside run --local` trains and "
            "pushes one"
        )
    request = {"amount": args.amount, "merchant_category": args.merchant_category}
    rows = [{"user_id": user, **request} for user in args.user_id]
    with tempfile.TemporaryDirectory(prefix="portside-predict-") as scratch:
        model_dir = registry.files(champion, scratch)
        # The model contract says which feature service it was trained on and what it outputs.
        contract = FeatureSpec.load(model_dir)
        frame = lookup(args.repo, contract.feature_service or args.feature_service, rows)
        scores = predict(model_dir, frame)
    print(f"champion: {args.model_name} v{champion.version}")
    for user, score in zip(args.user_id, scores, strict=True):
        print(
            f"user {user}: {contract.output} {score:.4f} for {args.amount:.2f} at "
            f"{args.merchant_category}"
        )
    print("look further:")
    print(f"  mlflow ui --backend-store-uri {registry.tracking_uri}   # runs, versions, champion")
    print(f"  portside models list --model-name {args.model_name}")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from portside.components.serve.cli import serve, settings_from_args

    if args.demo:
        return _serve_demo(args)
    settings = settings_from_args(args)
    served = "the champion" if settings.model_version == CHAMPION else f"v{settings.model_version}"
    if settings.challenger_version:
        share = "in shadow" if settings.shadow else f"on {settings.canary_percent:g}% canary"
        served += f" (challenger v{settings.challenger_version} {share})"
    print(
        f"serving {served} of {settings.model_name} on http://{settings.host}:{settings.port}"
        f" (Vertex AI: POST {settings.predict_route}; OIP v2: POST "
        f"/v2/models/{settings.model_name}/infer; /metrics); Ctrl-C stops it",
        flush=True,
    )
    return serve(settings, args.graceful_shutdown_s, not args.no_access_log)


def _post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        raise ConfigurationError(f"POST {url}: {error.code} {error.read().decode()}") from None


def _no_champion(status: int, body: bytes) -> str | None:
    """Stop waiting on a 503 for want of a champion: only a training run makes one."""
    reason = json.loads(body or b"{}").get("reason", "") if status == 503 else ""
    return f"{reason}; `portside run --local` makes one" if "no champion" in reason else None


def _serve_demo(args: argparse.Namespace) -> int:
    """Start `python -m portside.components serve` (what the image runs), ask it through both
    protocols, print the answers, stop it with SIGTERM as Kubernetes would."""
    from portside.pipelines.local_server import LocalServer, free_port

    port = free_port()
    log = Path("data") / "serve" / "demo_server.log"
    log.unlink(missing_ok=True)
    command = [sys.executable, "-m", "portside.components", "serve", "--port", str(port)]
    command += ["--feature-repo", args.feature_repo, "--model-name", args.model_name]
    command += ["--tracking-uri", args.tracking_uri, "--prediction-log", args.prediction_log]
    started = time.monotonic()
    server = LocalServer.start(command, port, log)
    url = server.url
    try:
        health = server.wait_ready("/health", SERVER_START_TIMEOUT_S, _no_champion)
        version = json.loads(health)["model_version"]
        ready_s = time.monotonic() - started
        print(f"serving {args.model_name} v{version} on {url} (ready in {ready_s:.1f} s)")
        rows = [
            {"user_id": user, "amount": args.amount, "merchant_category": args.merchant_category}
            for user in args.user_id
        ]
        vertex = _post(url + args.predict_route, {"instances": rows})["predictions"]
        output = next(k for k in vertex[0] if k != "model_version")
        shown = ", ".join(
            f"user {r['user_id']} {p[output]:.4f}" for r, p in zip(rows, vertex, strict=True)
        )
        served = vertex[0]["model_version"]
        print(f"  Vertex AI  POST {args.predict_route}: v{served} {output} {shown}")
        columns = {"user_id": "INT64", "amount": "FP64", "merchant_category": "BYTES"}
        inputs = [
            {"name": name, "datatype": kind, "shape": [len(rows)], "data": [r[name] for r in rows]}
            for name, kind in columns.items()
        ]
        infer = f"/v2/models/{args.model_name}/infer"
        body = {"inputs": inputs}
        answer = _post(url + infer, body)
        scores = ", ".join(f"{v:.4f}" for v in answer["outputs"][0]["data"])
        print(f"  OIP v2     POST {infer}: v{answer['model_version']} {output} {scores}")
    finally:
        server.stop()
    print(f"stopped the server (SIGTERM); its log: {log}")
    from portside.components.common.tracking import resolve_tracking_uri

    example = json.dumps({"instances": rows[:1]})
    print("look further:")
    print(f"  portside serve   # http://127.0.0.1:8080; POST {args.predict_route} '{example}'")
    print(f"  mlflow ui --backend-store-uri {resolve_tracking_uri(args.tracking_uri)}")
    print(f"  portside models list --model-name {args.model_name}")
    return 0


def add_serving_commands(commands: argparse._SubParsersAction) -> None:
    from portside.components.serve.cli import add_arguments

    server = commands.add_parser(
        "serve", help="serve the champion over HTTP (Vertex AI and Open Inference Protocol v2)"
    )
    add_arguments(server, model_name="fraud_model", prediction_log="data/prediction_log")
    demo = server.add_argument_group("--demo: start, ask through both protocols, stop")
    demo.add_argument("--demo", action="store_true")
    demo.add_argument("--user-id", type=int, nargs="+", default=[1, 2, 3])
    demo.add_argument("--amount", type=float, default=250.0)
    demo.add_argument("--merchant-category", default="electronics")
    server.set_defaults(handler=_serve)

    pred = commands.add_parser("predict", help="score a transaction online with the champion")
    pred.add_argument("--user-id", type=int, nargs="+", required=True)
    pred.add_argument("--amount", type=float, required=True)
    pred.add_argument("--merchant-category", required=True)
    pred.add_argument(
        "--feature-service",
        default="fraud_model_v1",
        help="used only for a model whose contract names none",
    )
    pred.add_argument("--repo", default="feature_repo", help="Feast repo path")
    pred.add_argument("--model-name", default="fraud_model")
    pred.add_argument("--tracking-uri", default="", help="MLflow URI (default: data/mlflow)")
    pred.set_defaults(handler=_predict)
