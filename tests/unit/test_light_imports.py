"""Light callers (specs, `--help`) must not pay for the heavy libraries."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

HEAVY = (
    "tensorflow",
    "great_expectations",
    "feast",
    "google.cloud.aiplatform",
    "tfx",
    "duckdb",
    "mlflow",
    "kfp",
)

PROBE = f"""
import sys
import portside.components.__main__ as entry
import portside.pipelines.cli as cli
from portside.components.registry import all_specs
specs = all_specs()
for parser in (entry.build_parser(), cli.build_parser()):
    parser.format_help()
heavy = [m for m in {HEAVY!r} if m in sys.modules]
print(",".join(heavy) or "none", len(specs))
"""


def test_specs_and_help_import_no_heavy_library():
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    heavy, count = done.stdout.split()
    assert heavy == "none"
    assert int(count) >= 1


def test_help_of_both_commands_succeeds():
    for args in (
        ["-m", "portside.components", "--help"],
        ["-m", "portside.pipelines.cli", "features", "--help"],
    ):
        done = subprocess.run(
            [sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        assert "usage:" in done.stdout
