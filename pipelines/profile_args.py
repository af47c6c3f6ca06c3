"""The `--profile` and `--image` flags of the commands that build for production (compile,
submit, schedule, deploy), and the profile they name. Light: the profile's models (pydantic,
YAML) load only when a command runs, not for `portside --help`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from portside.pipelines.profile import Profile


def add_profile_arguments(parser: argparse.ArgumentParser) -> None:
    """`--profile` and `--image`, as the compile, submit, schedule and deploy commands take them."""
    parser.add_argument(
        "--profile",
        required=True,
        help="production profile (YAML, e.g. deploy/profiles/production.yaml); "
        "PORTSIDE_<SECTION>__<FIELD> variables override it",
    )
    parser.add_argument("--image", help="component image (default: the profile's, else versioned)")


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile `--profile` names, with `--image` replacing its image when given."""
    from portside.pipelines.profile import load_profile

    profile = load_profile(args.profile)
    if args.image:
        image = profile.image.model_copy(update={"name": args.image})
        profile = profile.model_copy(update={"image": image})
    return profile
