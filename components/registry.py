"""Where the specs of all components are found, by name."""

from __future__ import annotations

import importlib

from components.spec import ComponentSpec

COMPONENT_NAMES: tuple[str, ...] = ("features",)


def get_spec(name: str) -> ComponentSpec:
    if name not in COMPONENT_NAMES:
        raise KeyError(f"unknown component {name!r}; known: {', '.join(COMPONENT_NAMES)}")
    return importlib.import_module(f"components.{name}.spec").SPEC


def all_specs() -> list[ComponentSpec]:
    return [get_spec(name) for name in COMPONENT_NAMES]
