"""Portside: orchestrator-native MLOps pipeline components.

Installed, the project's packages live under this one name, so that they cannot collide with a
user's own `components` or `pipelines` packages: `portside.components` (one folder per
component, `python -m portside.components <name>`), `portside.pipelines` (wiring, compile,
submission, the `portside` CLI) and `portside.synthetic_data` (the worked example's source
system). In a source checkout they are the repository's top-level folders (components/,
pipelines/, synthetic_data/); this package then reaches them through its path.
"""

from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent
if not (Path(__file__).resolve().parent / "components").is_dir():
    # A source checkout (the wheel holds the subpackages here): the repository's folders.
    __path__.append(str(_CHECKOUT))
