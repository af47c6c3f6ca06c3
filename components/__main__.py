"""Container entrypoint, the same in every runtime:
`python -m portside.components <name> --arg value`.

Exit codes: 0 success, 1 error, 2 usage error, 3 gate failed (validation or blessing said no).
On failure a one-line reason goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import traceback

from portside.components.errors import PortsideError
from portside.components.registry import component_names, get_spec
from portside.components.spec import ComponentSpec

DEFAULT_CACHE_DIR = "data/cache"


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _add_component_parser(subparsers: argparse._SubParsersAction, spec: ComponentSpec) -> None:
    parser = subparsers.add_parser(spec.name, help=spec.doc.split("\n")[0], description=spec.doc)
    for artifact in spec.inputs:
        parser.add_argument(_flag(artifact.name), required=True, metavar="PATH", help=artifact.doc)
    for artifact in spec.outputs:
        parser.add_argument(_flag(artifact.name), required=True, metavar="PATH", help=artifact.doc)
    for param in spec.parameters:
        given = {"required": True} if param.required else {"default": param.default}
        note = "required" if param.required else f"default: {param.default}"
        parser.add_argument(
            _flag(param.name),
            type=_parse_bool if param.type is bool else param.type,
            choices=param.choices,
            help=f"{param.doc} ({note})",
            **given,
        )
    # Every component takes the same cache options, so orchestrators can pass them uniformly.
    never = "" if spec.cacheable else "; this component is never cached"
    parser.add_argument(
        "--cache-dir",
        default=DEFAULT_CACHE_DIR,
        help=f"content-addressed cache of outputs (default: {DEFAULT_CACHE_DIR}{never})",
    )
    parser.add_argument("--no-cache", action="store_true", help="always run; store nothing")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m portside.components", description="Run one Portside component."
    )
    parser.epilog = "`python -m portside.components serve --help`: the prediction server."
    subparsers = parser.add_subparsers(dest="component", required=True, metavar="COMPONENT")
    for name in component_names():
        _add_component_parser(subparsers, get_spec(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    from portside.components.runtime import execute

    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["serve"]:  # the prediction server: long-running, not a pipeline step
        from portside.components.serve.cli import main as serve

        return serve(argv[1:])
    args = vars(build_parser().parse_args(argv))
    spec = get_spec(args.pop("component"))
    cache_dir = args.pop("cache_dir", None)
    if args.pop("no_cache", False):
        cache_dir = None
    try:
        manifest = execute(spec, args, cache_dir=cache_dir)
    except PortsideError as error:
        print(f"{spec.name}: {type(error).__name__}: {error}", file=sys.stderr)
        return error.exit_code
    except Exception as error:  # a bug or an environment problem: keep the details
        traceback.print_exc()
        print(f"{spec.name}: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    outputs = ", ".join(info["path"] for info in manifest.outputs.values())
    print(f"{spec.name}: {manifest.status} in {manifest.seconds:.2f} s -> {outputs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
