"""The `portside` command as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys

import pyarrow.parquet as pq
import pytest
from conftest import BIN, ROOT, make_workspace, run_cli, run_command

pytestmark = pytest.mark.integration


def test_data_generate_writes_the_three_tables(tmp_path):
    out = run_cli(
        [
            str(BIN / "portside"),
            "data",
            "generate",
            "--transactions",
            "3000",
            "--seed",
            "3",
            "--end",
            "2026-10-01",
            "--out",
            str(tmp_path),
            "--quiet",
        ],
        cwd=ROOT,
    )
    assert "fraud rate" in out
    assert pq.read_metadata(tmp_path / "transactions.parquet").num_rows == 3000
    for name in ("user_profiles", "user_daily_aggregates"):
        assert pq.read_metadata(tmp_path / f"{name}.parquet").num_rows > 0


def test_materialize_then_lookup(fresh_workspace):
    repo = str(fresh_workspace.repo)
    out = run_cli(
        [
            str(BIN / "portside"),
            "features",
            "materialize",
            "--start",
            "2026-10-01",
            "--end",
            "2026-11-01",
            "--repo",
            repo,
            "--quiet",
        ],
        cwd=ROOT,
    )
    assert "user_daily_aggregates:" in out and "entities" in out
    out = run_cli(
        [str(BIN / "portside"), "features", "lookup", "--user-id", "1", "2", "--repo", repo],
        cwd=ROOT,
    )
    assert "credit_limit" in out and "amount_to_avg_30d" in out


def test_features_apply_summarises_what_feast_apply_changed(workspace, tmp_path):
    ws = make_workspace(tmp_path, sources=workspace.sources)
    command = [str(BIN / "portside"), "features", "apply", "--repo", str(ws.repo)]
    first = run_cli(command, cwd=tmp_path).splitlines()
    assert first[0] == (
        f"feast apply {ws.repo}: created 1 project, 1 entity, 2 feature views, "
        "1 on demand feature view, 1 feature service"
    )
    assert first[1] == f"feast apply {ws.repo}: online store created 2 sqlite tables"
    assert len(first) == 2  # Feast's own lines (and its warnings) are not printed
    assert (tmp_path / "data" / "feast" / "registry.db").is_file()
    again = run_cli(command, cwd=tmp_path).splitlines()
    assert again == [f"feast apply {ws.repo}: no changes (6 unchanged)"]


def test_features_apply_of_a_folder_without_a_repo_names_it(tmp_path):
    done = run_command([str(BIN / "portside"), "features", "apply", "--repo", str(tmp_path)])
    assert done.returncode == 1
    assert f"{tmp_path}: no feature_store.yaml" in done.stderr


def test_materialize_without_start_is_a_clear_error(workspace):
    done = run_command(
        [
            sys.executable,
            "-m",
            "portside.pipelines.cli",
            "features",
            "materialize",
            "--repo",
            str(workspace.repo),
        ],
    )
    assert done.returncode == 1
    assert "--start is required" in done.stderr


PROFILE = str(ROOT / "deploy" / "profiles" / "production.yaml")


def _dry_run(tmp_path, *extra: str) -> subprocess.CompletedProcess:
    return run_command(
        [
            str(BIN / "portside"),
            "submit",
            "--profile",
            PROFILE,
            "--entity-rows",
            "gs://data/rows.parquet",
            "--template",
            str(tmp_path / "training.yaml"),
            "--dry-run",
            *extra,
        ],
    )


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    import yaml

    out = tmp_path_factory.mktemp("cli")
    cmd = [str(BIN / "portside"), "compile", "--profile", PROFILE, "-o", str(out / "training.yaml")]
    assert "wrote" in run_cli(cmd, ROOT)
    spec = yaml.safe_load((out / "training.yaml").read_text())
    assert spec["pipelineInfo"]["name"] == "portside-training"
    return out


def test_compile_and_submit_dry_run_as_documented(compiled):
    done = _dry_run(
        compiled, "--project", "proj-1", "--region", "us-central1", "--pipeline-root",
        "gs://b/root", "--label", "team=fraud", "--param", "epochs=3",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    assert request["parent"] == "projects/proj-1/locations/us-central1"  # flags win
    job = request["pipelineJob"]
    # the rest comes from the profile
    assert job["serviceAccount"] == "portside-trainer@portside-project.iam.gserviceaccount.com"
    assert job["network"] == "projects/123456789/global/networks/ml-vpc"  # pragma: allowlist secret
    assert job["encryptionSpec"]["kmsKeyName"].endswith("/cryptoKeys/pipelines")
    assert job["labels"] == {"team": "fraud"}
    assert job["runtimeConfig"]["parameterValues"]["epochs"] == 3
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/root"


def test_param_values_take_the_pipelines_declared_types(compiled):
    done = _dry_run(
        compiled, "--param", "hidden_units=128", "--param", "epochs=3",
        "--param", "min_roc_auc=1", "--param", "as_of=2026-11-01",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    values = json.loads(done.stdout)["pipelineJob"]["runtimeConfig"]["parameterValues"]
    assert values["hidden_units"] == "128"  # a STRING parameter, not the number 128
    assert values["epochs"] == 3 and values["min_roc_auc"] == 1.0
    assert values["as_of"] == "2026-11-01"


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("epochs=three", "--param epochs='three': epochs is an integer"),
        ("epochs=2.5", "--param epochs='2.5': epochs is an integer"),
        ("min_roc_auc=high", "min_roc_auc is a number"),
        ("hiden_units=128", "--param hiden_units: the pipeline has no such parameter"),
        ("epochs", "--param 'epochs' is not NAME=VALUE"),
    ],
)
def test_bad_param_values_name_the_parameter(compiled, param, message):
    done = _dry_run(compiled, "--param", param)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_run_local_coerces_params_by_declared_type(tmp_path):
    rows = tmp_path / "rows.parquet"
    rows.write_bytes(b"")  # the features task fails on it; the pipeline must start first
    done = run_command(
        [
            str(BIN / "portside"), "run", "--local", "--entity-rows", str(rows),
            "--param", "hidden_units=128", "--param", "epochs=1",
            "--pipeline-root", str(tmp_path / "runs"), "--no-cache",
        ],
        cwd=tmp_path,
    )  # fmt: skip
    output = done.stdout + done.stderr
    assert "did not start" not in output and "NUMBER_INTEGER" not in output, output[-3000:]
    assert "pipeline failed at features after" in output, output[-3000:]
    assert "executor_input" not in output  # kfp.local's logs stay in the run folder
    (record,) = (tmp_path / "runs").glob("*/pipeline_run.json")
    assert json.loads(record.read_text())["parameters"]["hidden_units"] == "128"


def test_run_without_local_says_what_to_use_instead():
    done = run_command([str(BIN / "portside"), "run"])
    assert done.returncode == 1
    assert "add --local" in done.stderr and "portside submit --profile" in done.stderr


def test_submit_without_service_account_fails_before_anything_is_sent(compiled):
    done = _dry_run(compiled, "--service-account", "")
    assert done.returncode == 1
    assert "--service-account is required" in done.stderr


def test_submit_refuses_a_pipeline_that_would_push_inside_its_container(compiled):
    done = _dry_run(compiled, "--param", "tracking_uri=")
    assert done.returncode == 1
    assert "tracking_uri '' is a registry inside the task's container" in done.stderr
    assert "training.yaml with these parameters" in done.stderr


def test_compile_and_submit_need_a_profile(tmp_path):
    done = run_command([str(BIN / "portside"), "compile", "-o", str(tmp_path / "t.yaml")])
    assert done.returncode == 2 and "--profile" in done.stderr
