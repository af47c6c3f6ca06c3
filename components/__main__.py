"""Container entrypoint, the same in every runtime: `python -m components <name> --arg value`.

Exit codes: 0 success, 1 error, 2 usage error, 3 gate failed (validation or blessing said no).
On failure a one-line reason goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, is_dataclass

from components.errors import PortsideError
from components.registry import COMPONENT_NAMES, get_spec
from components.spec import ComponentSpec


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
        parser.add_argument(
            _flag(param.name),
            type=_parse_bool if param.type is bool else param.type,
            default=param.default,
            choices=param.choices,
            help=f"{param.doc} (default: {param.default})",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components", description="Run one Portside component."
    )
    subparsers = parser.add_subparsers(dest="component", required=True, metavar="COMPONENT")
    for name in COMPONENT_NAMES:
        _add_component_parser(subparsers, get_spec(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    spec = get_spec(args.pop("component"))
    try:
        result = spec.load()(**args)
    except PortsideError as error:
        print(f"{spec.name}: {type(error).__name__}: {error}", file=sys.stderr)
        return error.exit_code
    summary = asdict(result) if is_dataclass(result) else result
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
