"""The `portside` command as a user runs it."""

from __future__ import annotations

import sys

import pyarrow.parquet as pq
import pytest
from conftest import BIN, ROOT, run_cli, run_command

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


def test_materialize_without_start_is_a_clear_error(workspace):
    done = run_command(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "features",
            "materialize",
            "--repo",
            str(workspace.repo),
        ],
    )
    assert done.returncode == 1
    assert "--start is required" in done.stderr


def test_compile_and_submit_dry_run_as_documented(tmp_path):
    import json

    import yaml

    out = run_cli([str(BIN / "portside"), "compile", "-o", str(tmp_path / "training.yaml")], ROOT)
    assert "wrote" in out
    assert yaml.safe_load((tmp_path / "training.yaml").read_text())["pipelineInfo"]["name"] == (
        "portside-training"
    )
    done = run_command(
        [
            str(BIN / "portside"),
            "submit",
            "--entity-rows",
            "gs://data/rows.parquet",
            "--project",
            "proj-1",
            "--region",
            "us-central1",
            "--pipeline-root",
            "gs://b/root",
            "--service-account",
            "trainer@proj-1.iam.gserviceaccount.com",
            "--label",
            "team=fraud",
            "--param",
            "epochs=3",
            "--template",
            str(tmp_path / "training.yaml"),
            "--dry-run",
        ],
    )
    assert done.returncode == 0, done.stderr
    request = json.loads(done.stdout)
    assert request["parent"] == "projects/proj-1/locations/us-central1"
    job = request["pipelineJob"]
    assert job["serviceAccount"] == "trainer@proj-1.iam.gserviceaccount.com"
    assert job["labels"] == {"team": "fraud"}
    assert job["runtimeConfig"]["parameterValues"]["epochs"] == 3
    assert job["runtimeConfig"]["gcsOutputDirectory"] == "gs://b/root"


def test_submit_without_service_account_fails_before_anything_is_sent(tmp_path):
    done = run_command(
        [
            str(BIN / "portside"),
            "submit",
            "--entity-rows",
            "gs://d/r.parquet",
            "--project",
            "p",
            "--region",
            "us-central1",
            "--pipeline-root",
            "gs://b/root",
            "--service-account",
            "",
            "--dry-run",
        ],
    )
    assert done.returncode == 1
    assert "--service-account is required" in done.stderr
