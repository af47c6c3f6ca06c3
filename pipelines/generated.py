"""Functions defined from generated source, as the KFP and TFX bindings make their components.

The source is registered in `linecache` under a synthetic file name (KFP reads a component's
source back with `inspect.getsource`; tracebacks show the generated lines) and compiled without
inheriting this package's `from __future__ import annotations`: KFP and TFX read the types from
real annotation objects, not strings.
"""

from __future__ import annotations

import linecache
from collections.abc import Callable
from typing import Any


def define_function(
    source: str, name: str, namespace: dict[str, Any], module: str, filename: str
) -> Callable[..., Any]:
    """Exec `source` in `namespace` and return its function `name`, owned by `module` (where
    an orchestrator will look it up by path)."""
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec", dont_inherit=True), namespace)
    function = namespace[name]
    function.__module__ = module
    return function
