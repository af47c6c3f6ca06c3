"""Shared fixtures: a Feast repo copy over freshly generated data, applied with the real CLI."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
DATA_END = datetime(2026, 11, 1, tzinfo=timezone.utc)
# The worked example's names: components take them as parameters, they have no defaults.
FEATURE_SERVICE = "fraud_model_v1"
LABEL = "is_fraud"
MODEL_NAME = "fraud_model"  # the registered model evaluate compares against and push publishes
EXPECTATION_SUITE = ROOT / "feature_repo" / "expectations" / "fraud_model_v1.json"
EXAMPLE = {"feature_service": FEATURE_SERVICE, "label_column": LABEL}
EXAMPLE_ARGS = ["--feature-service", FEATURE_SERVICE, "--label-column", LABEL]  # entrypoint
# Its features per feature view (feature_repo/definitions.py), and the on-demand ones.
VIEW_FEATURES = {
    "user_profile": ["account_age_days", "credit_limit", "country"],
    "user_daily_aggregates": [
        "txn_count_1d",
        "txn_amount_1d",
        "txn_count_7d",
        "txn_amount_7d",
        "txn_count_30d",
        "txn_amount_30d",
        "avg_amount_30d",
    ],
}
STORED_FEATURES = [f for features in VIEW_FEATURES.values() for f in features]
ON_DEMAND_FEATURES = ["amount_to_avg_30d", "amount_to_credit_limit"]
# Numbers that are neither key, label nor timestamp: the request's amount and every numeric feature.
NUMERIC_FEATURES = (
    "amount",
    *(f for f in STORED_FEATURES if f != "country"),
    *ON_DEMAND_FEATURES,
)


def uv_command() -> list[str]:
    """uv as `make test` found it (UV: maybe `python3 -m uv`), else from PATH."""
    if os.environ.get("UV"):
        return shlex.split(os.environ["UV"])
    found = shutil.which("uv")
    if found is None:
        pytest.fail("uv is neither in $UV nor on PATH; run the tests with `make test`")
    return [found]


@dataclass(frozen=True)
class FeatureWorkspace:
    """A copy of the project's feature repo next to its own `data/` folder."""

    root: Path
    repo: Path
    sources: Path


def run_command(
    args: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run a command as a user would, capturing its output."""
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def run_component(name: str, *args: str) -> subprocess.CompletedProcess:
    """The container entrypoint, `python -m portside.components <name> ...`, as every runtime
    starts it."""
    return run_command([sys.executable, "-m", "portside.components", name, *args])


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    """Run a command as a user would; fail the test with its output if it fails."""
    done = run_command(args, cwd=cwd, env=env)
    assert done.returncode == 0, f"{args} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}"
    return done.stdout + done.stderr


def make_workspace(root: Path, sources: Path | None = None) -> FeatureWorkspace:
    """Copy feature_repo/ under root; link (or generate) root/data/sources."""
    from portside.synthetic_data import SyntheticDataConfig, generate

    shutil.copytree(ROOT / "feature_repo", root / "feature_repo")
    target = root / "data" / "sources"
    target.parent.mkdir(parents=True, exist_ok=True)
    if sources is None:
        config = SyntheticDataConfig(transactions=20_000, users=400, end=DATA_END, seed=11)
        generate(config, target, progress=False)
    else:
        target.symlink_to(sources)
    return FeatureWorkspace(root, root / "feature_repo", target)


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> FeatureWorkspace:
    ws = make_workspace(tmp_path_factory.mktemp("features"))
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo)
    return ws


@pytest.fixture
def fresh_workspace(workspace: FeatureWorkspace, tmp_path: Path) -> FeatureWorkspace:
    """Its own registry and online store over the session's data, applied and empty."""
    ws = make_workspace(tmp_path, sources=workspace.sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=ws.repo)
    return ws


@pytest.fixture(scope="session")
def tfx_python() -> Path:
    """The TFX environment's interpreter. Skipped, with the reason, only where this machine has
    no Python 3.10 (then `make setup` cannot build .venv-tfx and says so); a missing .venv-tfx
    beside an installed 3.10 is a failure."""
    python = ROOT / ".venv-tfx" / "bin" / "python"
    if python.is_file():
        return python
    found = subprocess.run([str(ROOT / "deploy" / "tfx" / "find_python.sh")], capture_output=True)
    if found.returncode != 0:
        pytest.skip("no Python 3.10 here: `make setup` did not build the TFX environment")
    pytest.fail(f"{python} is missing although {found.stdout.decode().strip()} exists: make setup")


def assert_same_values(left, right, columns: list[str]) -> None:
    """Equal values per column, nulls in the same places, floats to 1e-9 relative."""
    import numpy as np
    import pandas as pd

    assert len(left) == len(right)
    for column in columns:
        a = pd.Series(left[column]).reset_index(drop=True)
        b = pd.Series(right[column]).reset_index(drop=True)
        assert (a.isna() == b.isna()).all(), f"{column}: nulls differ"
        a, b = a[a.notna()], b[b.notna()]
        if a.dtype.kind == "f" or b.dtype.kind == "f":
            assert np.allclose(a.astype(float), b.astype(float), rtol=1e-9, atol=0), column
        else:
            assert (a.astype(object) == b.astype(object)).all(), f"{column}: values differ"


@pytest.fixture(scope="session")
def training_set(workspace: FeatureWorkspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The features component's output over the session's data (built once)."""
    from portside.components.features.run import run as build_training_set

    out = tmp_path_factory.mktemp("training_set")
    build_training_set(
        entity_rows=str(workspace.sources / "transactions.parquet"),
        training_set=str(out),
        feature_repo=str(workspace.repo),
        **EXAMPLE,
    )
    return out


def copy_training_set(source: Path, target: Path, frame=None) -> Path:
    """A training set directory like `source` (its manifest) with `frame` as its rows."""
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(source / "manifest.json", target / "manifest.json")
    if frame is None:
        shutil.copy(source / "training_set.parquet", target / "training_set.parquet")
    else:
        frame.to_parquet(target / "training_set.parquet", index=False)
    return target


def prediction_log_rows(training_set: Path, start, end, seed: int = 3):
    """A prediction log as a perfectly fresh server would write it for the transactions in
    [start, end): at each transaction's time, the features training joins for it (as known
    then), request ids = transaction ids; scores that rank the frauds above most others."""
    import numpy as np
    import pandas as pd

    frame = pd.read_parquet(training_set / "training_set.parquet")
    frame = frame[(frame["event_timestamp"] >= start) & (frame["event_timestamp"] < end)]
    rng = np.random.default_rng(seed)
    score = np.clip(0.05 + 0.5 * frame["is_fraud"] + rng.normal(0, 0.2, len(frame)), 0, 1)
    log = frame.drop(columns=["is_fraud", "transaction_id"]).assign(
        timestamp=frame["event_timestamp"],
        request_id=frame["transaction_id"].astype(str),
        instance=0,
        model_version="1",
        arm="champion",
        score=score,
    )
    return log.drop(columns=["event_timestamp"])


def write_prediction_log(log, folder: Path) -> Path:
    """The rows as the server's prediction log writes them (date-partitioned Parquet)."""
    from portside.components.serve.prediction_log import write_parquet

    write_parquet(folder, log.to_dict("records"))
    return folder


def write_validation_summary(path: Path, passed: bool | None, failures: list | None = None) -> Path:
    """A validation directory as the validate component leaves it, for steps after it
    (`passed=None`: a directory without a summary)."""
    import json

    path.mkdir(parents=True, exist_ok=True)
    if passed is not None:
        summary = {"passed": passed, "failures": failures or []}
        (path / "summary.json").write_text(json.dumps(summary))
    return path
