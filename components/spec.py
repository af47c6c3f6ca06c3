"""The component contract: a cheap, typed description from which every binding is derived.

Importing a spec never imports the heavy libraries; `ComponentSpec.load()` imports the
implementation only when it is about to run.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

ArtifactKind = Literal["dataset", "model", "metrics", "html", "directory"]
# What an orchestrator makes of a gate failure (exit 3): "fail" the run (validation said no),
# or "skip" the step (nothing to do, e.g. push of a model that was not blessed).
GatePolicy = Literal["fail", "skip"]
ParameterType = type[str] | type[int] | type[float] | type[bool]


class _Required:
    """The default of a parameter without one: the caller names it (a model name, a suite),
    because any value here would be the worked example's."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Artifact:
    """An input or output addressed by a path (a file or a directory)."""

    name: str
    kind: ArtifactKind
    doc: str


@dataclass(frozen=True)
class Parameter:
    """A typed scalar parameter with a default, or REQUIRED."""

    name: str
    type: ParameterType
    default: Any
    doc: str
    choices: tuple[str, ...] | None = None
    # The value names a file whose content, not just its path, decides the result: the
    # cache key holds the file's content hash.
    file: bool = False
    # An empty value means "now": such a run depends on the clock and is never cached.
    now_if_empty: bool = False
    # "module:function(value) -> value", stdlib-only: the cache key holds what the value
    # resolves to, for values that mean different things in different places (an empty
    # tracking URI is a file under the working directory).
    resolve: str | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def resolved(self, value: Any) -> Any:
        return value if self.resolve is None else _function(self.resolve)(value)


@dataclass(frozen=True)
class ComponentSpec:
    """What a component takes and gives; `implementation` is "module:function"."""

    name: str
    doc: str
    implementation: str
    inputs: tuple[Artifact, ...] = ()
    outputs: tuple[Artifact, ...] = ()
    parameters: tuple[Parameter, ...] = field(default=())
    # False for components whose result depends on more than their declared inputs (the
    # features component reads a moving feature store); downstream steps still cache on the
    # content of what it wrote.
    cacheable: bool = True
    # For results that depend on more than the declared inputs (a feature store's sources, the
    # registry's champion): "module:function(parameters, result) -> bool", stdlib-only, says
    # whether a cached result still holds. Called only on a cache hit.
    revalidate: str | None = None
    # Scalar results an orchestrator can branch on (e.g. evaluate's `blessed`); each is a key
    # of the dict/dataclass that the implementation returns.
    returns: tuple[Parameter, ...] = ()
    # A gate failure of this component fails the pipeline run, or only skips this step.
    on_gate_failed: GatePolicy = "fail"

    def load(self) -> Callable[..., Any]:
        return _function(self.implementation)

    def still_valid(self, parameters: dict[str, Any], result: Any) -> bool:
        return self.revalidate is None or bool(_function(self.revalidate)(parameters, result))


def _function(reference: str) -> Callable[..., Any]:
    module_name, function_name = reference.split(":")
    return getattr(importlib.import_module(module_name), function_name)
