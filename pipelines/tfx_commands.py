"""`portside run --tfx` and `portside compile --tfx`, from the main environment.

Feast lives only here, so `run --tfx` builds the training set with the `features` component in
this process, then starts the TFX pipeline (pipelines/tfx_pipeline.py) in the TFX environment
(.venv-tfx) as a subprocess; TFX's log goes to a file in the run folder. `compile --tfx` compiles
it there for Vertex AI.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import MISSING, fields
from pathlib import Path

from portside.components.errors import ConfigurationError, PortsideError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
# Lines of the TFX log worth showing on the console: each Portside step's summary and the
# example import (pipelines.kfp_shim.summary_line, pipelines.tfx_shim).
SUMMARY_PREFIXES = ("examples:", "validate:", "train:", "evaluate:", "push:", "tfx:")


def tfx_python() -> Path:
    """The TFX environment's interpreter: $PORTSIDE_TFX_PYTHON, else the checkout's .venv-tfx."""
    configured = os.environ.get("PORTSIDE_TFX_PYTHON")
    python = Path(configured) if configured else PROJECT_ROOT / ".venv-tfx" / "bin" / "python"
    if not python.is_file():
        raise ConfigurationError(
            f"{python}: the TFX environment is not built. `make setup` builds .venv-tfx when a "
            "Python 3.10 is installed (pyenv install 3.10, or set TFX_PYTHON=/path/python3.10)"
        )
    return python


def tfx_settings_arguments(pairs: list[str]) -> list[str]:
    """`--param NAME=VALUE` pairs as the TFX pipeline's flags, names checked here (the values
    are typed there)."""
    from portside.pipelines.pipeline_commands import named_pairs
    from portside.pipelines.tfx_pipeline import TfxPipelineSettings

    known = {f.name for f in fields(TfxPipelineSettings) if f.default is not MISSING}
    known -= {"metadata_path", "portside_cache_dir"}
    flags: list[str] = []
    for name, value in named_pairs(pairs, known, "the TFX pipeline").items():
        flags += ["--" + name.replace("_", "-"), value]
    return flags


def run_tfx(args: argparse.Namespace) -> int:
    """features here, then the TFX pipeline on LocalDagRunner in .venv-tfx."""
    from portside.components.registry import get_spec
    from portside.components.runtime import execute
    from portside.pipelines.times import today_utc
    from portside.pipelines.training_pipeline import PipelineDefaults

    python = tfx_python()
    entity_rows = Path(args.entity_rows)
    if not entity_rows.is_file():
        raise ConfigurationError(
            f"{entity_rows}: entity rows not found (portside data generate writes them)"
        )
    flags = tfx_settings_arguments(args.param or [])
    root = Path(args.pipeline_root).resolve() / "tfx"
    root.mkdir(parents=True, exist_ok=True)
    defaults = PipelineDefaults()
    training_set = root / "training_set"
    started = time.perf_counter()
    manifest = execute(
        get_spec("features"),
        {
            "entity_rows": str(entity_rows.resolve()),
            "training_set": str(training_set),
            "feature_repo": defaults.feature_repo,
            "feature_service": defaults.feature_service,
            "label_column": defaults.label_column,
        },
        cache_dir=None if args.no_cache else args.cache_dir,
    )
    rows = (manifest.result or {}).get("rows_out", 0)
    print(
        f"features: {manifest.status} in {time.perf_counter() - started:.1f} s, "
        f"{rows:,} rows -> {training_set}"
    )
    if "--as-of" not in flags:
        flags += ["--as-of", today_utc().isoformat()]
    metadata = root / "metadata.sqlite"
    command = [
        str(python),
        "-m",
        "portside.pipelines.tfx_pipeline",
        "run",
        "--training-set-uri",
        str(training_set),
        "--pipeline-root",
        str(root / "artifacts"),
        "--metadata-path",
        str(metadata),
        "--portside-cache-dir",
        "" if args.no_cache else str(Path(args.cache_dir).resolve()),
        *flags,
    ]
    log = root / "tfx.log"
    returncode = _run_logged(command, log, verbose=args.verbose)
    if returncode != 0:
        print(f"tfx: the pipeline failed (exit {returncode}); its log: {log}", file=sys.stderr)
        _print_failure(log)
        return 1
    print(f"tfx: lineage in ML Metadata {metadata}; log {log}")
    return 0


def _run_logged(command: list[str], log: Path, verbose: bool) -> int:
    """Run `command`, its output to `log`; echo the summary lines (every line if verbose)."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    with log.open("w") as handle:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        assert process.stdout is not None
        for line in process.stdout:
            handle.write(line)
            if verbose or line.startswith(SUMMARY_PREFIXES):
                print(line.rstrip(), flush=True)
        return process.wait()


def _print_failure(log: Path) -> None:
    """The failed step's one-line reason: the last Portside error line of the log."""
    lines = log.read_text(errors="replace").splitlines()
    reasons = [line for line in lines if "Error:" in line or "GateFailed" in line]
    if reasons:
        print(f"tfx: {reasons[-1].strip()}", file=sys.stderr)


def compile_tfx(args: argparse.Namespace) -> int:
    """The TFX pipeline compiled for Vertex AI (KubeflowV2), in .venv-tfx, with the profile's
    pipeline defaults for every setting the two pipelines share."""
    from portside.pipelines.profile_args import profile_from_args
    from portside.pipelines.tfx_pipeline import TfxPipelineSettings

    profile = profile_from_args(args)
    defaults = profile.pipeline_defaults()
    output = Path(args.output or "training_tfx.json").resolve()
    output.unlink(missing_ok=True)  # what exists after the run is this run's
    if not profile.vertex.pipeline_root:
        raise ConfigurationError(f"{args.profile}: vertex.pipeline_root is required (gs://...)")
    vertex_root = profile.vertex.pipeline_root
    command = [
        str(tfx_python()),
        "-m",
        "portside.pipelines.tfx_pipeline",
        "compile",
        "--output",
        str(output),
        "--training-set-uri",
        args.training_set_uri,
        "--pipeline-root",
        vertex_root.rstrip("/") + "/tfx",
    ]
    shared = {f.name for f in fields(TfxPipelineSettings)} & {f.name for f in fields(defaults)}
    for name in sorted(shared):
        command += ["--" + name.replace("_", "-"), str(getattr(defaults, name))]
    if args.image:
        command += ["--image", args.image]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0 or not output.is_file():
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise PortsideError(f"compiling the TFX pipeline failed:\n{tail}")
    print(f"wrote {output}")
    return 0
