"""`import kfp` without its API client.

`kfp/__init__.py` imports `kfp.client`, which imports the Kubernetes client: 2.1 s of the 2.9 s
that `import kfp.dsl` took here. Compiling, submitting to Vertex AI and kfp.local never use that
client. kfp's own switch for skipping it is `_KFP_RUNTIME=true` (what its task containers set);
the switch also strips kfp.dsl's compile-time names, so it is set only while the top-level
package is imported, and `kfp.dsl` is then imported normally. `kfp.Client` (the Kubeflow
Pipelines API client) is not available after this.
"""

from __future__ import annotations

import importlib
import os
import sys

RUNTIME_SWITCH = "_KFP_RUNTIME"


def import_kfp() -> None:
    """Import the `kfp` package without `kfp.client`; call before any `from kfp import ...`."""
    if "kfp" in sys.modules:
        return
    previous = os.environ.get(RUNTIME_SWITCH)
    os.environ[RUNTIME_SWITCH] = "true"
    try:
        importlib.import_module("kfp")
    finally:
        if previous is None:
            os.environ.pop(RUNTIME_SWITCH, None)
        else:
            os.environ[RUNTIME_SWITCH] = previous
