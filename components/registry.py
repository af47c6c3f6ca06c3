"""Where the specs of all components are found, by name.

A component is a folder of this package with a `spec.py` defining `SPEC`.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from portside.components.spec import ComponentSpec

# The training pipeline's order; it only orders listings (help, docs).
PIPELINE_ORDER = ("features", "validate", "train", "evaluate", "push")


def component_names() -> list[str]:
    here = Path(__file__).resolve().parent
    found = [p.parent.name for p in here.glob("*/spec.py")]
    rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return sorted(found, key=lambda name: (rank.get(name, len(rank)), name))


def get_spec(name: str) -> ComponentSpec:
    names = component_names()
    if name not in names:
        raise KeyError(f"unknown component {name!r}; known: {', '.join(names)}")
    return importlib.import_module(f"portside.components.{name}.spec").SPEC


def all_specs() -> list[ComponentSpec]:
    return [get_spec(name) for name in component_names()]
