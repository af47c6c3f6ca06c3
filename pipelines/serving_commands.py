"""`portside predict`: one online prediction, as the serving path will make it.

Online features from Feast (the same FeatureService as training) plus the request fields, scored
by the registry's champion through its exported serving signature.
"""

from __future__ import annotations

import argparse
import tempfile

from components.errors import ConfigurationError


def _predict(args: argparse.Namespace) -> int:
    from components.common.model_io import FeatureSpec, predict
    from components.features.online import lookup
    from components.push.registry import Registry

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


def add_serving_commands(commands: argparse._SubParsersAction) -> None:
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
