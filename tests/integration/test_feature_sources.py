"""Where the offline sources live comes from PORTSIDE_FEATURE_SOURCES at `feast apply`
(feature_repo/definitions.py): a directory, object storage or BigQuery. The registry records it,
and the features component reads the sources from the registry."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest
from conftest import BIN, EXAMPLE, FEATURE_SERVICE, ROOT, make_workspace, run_cli, run_command

from portside.components.errors import ConfigurationError

pytestmark = pytest.mark.integration
VARIABLE = "PORTSIDE_FEATURE_SOURCES"
TABLES = {
    "user_profiles_source": "user_profiles",
    "user_daily_aggregates_source": "user_daily_aggregates",
}


def _apply(repo: Path, location: str, *flags: str) -> None:
    run_cli([str(BIN / "feast"), "apply", *flags], cwd=repo, env={**os.environ, VARIABLE: location})


def _registered(repo: Path) -> dict:
    from feast import FeatureStore

    store = FeatureStore(repo_path=str(repo))
    return {s.name: s for s in store.list_data_sources() if s.name in TABLES}


def _definitions(monkeypatch, location: str | None):
    """feature_repo/definitions.py as Feast loads it, with the variable set (or not)."""
    if location is None:
        monkeypatch.delenv(VARIABLE, raising=False)
    else:
        monkeypatch.setenv(VARIABLE, location)
    spec = importlib.util.spec_from_file_location(
        "definitions", ROOT / "feature_repo" / "definitions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def bare_workspace(workspace, tmp_path):
    """A repo copy whose embedded data/sources does not exist, so nothing can be read from there."""
    ws = make_workspace(tmp_path / "ws", sources=workspace.sources)
    ws.sources.unlink()
    return ws


def test_a_directory_elsewhere_is_registered_and_read_by_the_features_component(
    workspace, bare_workspace, tmp_path
):
    from portside.components.features.run import run as build_training_set

    elsewhere = tmp_path / "mounted" / "sources"
    shutil.copytree(workspace.sources, elsewhere)
    _apply(bare_workspace.repo, str(elsewhere))

    registered = _registered(bare_workspace.repo)
    assert {name: s.path for name, s in registered.items()} == {
        name: str(elsewhere / f"{table}.parquet") for name, table in TABLES.items()
    }
    manifest = build_training_set(
        entity_rows=str(elsewhere / "transactions.parquet"),
        training_set=str(tmp_path / "training_set"),
        feature_repo=str(bare_workspace.repo),
        **EXAMPLE,
    )
    sources_read = {p for p in manifest.read if p.endswith(".parquet")}
    assert sources_read == {str(elsewhere / f"{table}.parquet") for table in TABLES.values()}
    assert manifest.rows_out > 0 and manifest.null_counts["credit_limit"] < manifest.rows_out


@pytest.mark.parametrize("location", ["gs://bucket/prefix", "gs://bucket/prefix/"])
def test_object_storage_paths_are_registered_without_reading_data(bare_workspace, location):
    from portside.components.features.feast_repo import open_store, resolve_service

    # Source validation would open the bucket; the registry contents need no network.
    _apply(bare_workspace.repo, location, "--skip-source-validation")
    registered = _registered(bare_workspace.repo)
    expected = {name: f"gs://bucket/prefix/{table}.parquet" for name, table in TABLES.items()}
    assert {name: s.path for name, s in registered.items()} == expected
    for source in registered.values():
        assert (source.timestamp_field, source.created_timestamp_column) == (
            "event_timestamp",
            "created_timestamp",
        )
    # the features component takes these paths, untouched, for its DuckDB join
    service = resolve_service(open_store(bare_workspace.repo), FEATURE_SERVICE)
    assert service.file_sources_only
    assert sorted(view.path for view in service.views) == sorted(expected.values())


def test_bigquery_tables_are_registered_and_the_duckdb_engine_refuses_them(
    workspace, bare_workspace, tmp_path
):
    from feast import BigQuerySource

    from portside.components.features.run import run as build_training_set

    # Source validation would query BigQuery; the registry contents need no network.
    _apply(bare_workspace.repo, "bigquery://p.d", "--skip-source-validation")
    registered = _registered(bare_workspace.repo)
    assert all(isinstance(s, BigQuerySource) for s in registered.values())
    assert {name: s.table for name, s in registered.items()} == {
        name: f"p.d.{table}" for name, table in TABLES.items()
    }
    for source in registered.values():
        assert (source.timestamp_field, source.created_timestamp_column) == (
            "event_timestamp",
            "created_timestamp",
        )
    with pytest.raises(ConfigurationError, match="use --engine feast") as error:
        build_training_set(
            entity_rows=str(workspace.sources / "transactions.parquet"),
            training_set=str(tmp_path / "training_set"),
            feature_repo=str(bare_workspace.repo),
            engine="duckdb",
            **EXAMPLE,
        )
    assert FEATURE_SERVICE in str(error.value)
    assert "user_profile (BigQuerySource p.d.user_profiles)" in str(error.value)
    with pytest.raises(ConfigurationError, match="--point-in-time feast") as error:
        build_training_set(  # auto picks Feast's engine, which cannot join `as_known`
            entity_rows=str(workspace.sources / "transactions.parquet"),
            training_set=str(tmp_path / "training_set"),
            feature_repo=str(bare_workspace.repo),
            **EXAMPLE,
        )
    assert "BigQuerySource p.d.user_daily_aggregates" in str(error.value)


def test_feast_apply_refuses_a_bad_location_naming_the_variable(bare_workspace):
    env = {**os.environ, VARIABLE: "relative/sources"}
    done = run_command([str(BIN / "feast"), "apply"], cwd=bare_workspace.repo, env=env)
    assert done.returncode != 0
    assert f"{VARIABLE}='relative/sources': expected an absolute directory" in done.stderr
    assert not (bare_workspace.root / "data" / "feast" / "registry.db").exists()


def test_the_default_is_the_embedded_data_sources(monkeypatch):
    embedded = ROOT / "data" / "sources"
    for location in (None, "", "  "):
        definitions = _definitions(monkeypatch, location)
        assert definitions.user_profiles_source.path == str(embedded / "user_profiles.parquet")


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ("s3://bucket/a/b", "s3://bucket/a/b/user_profiles.parquet"),
        ("/mnt/features", "/mnt/features/user_profiles.parquet"),
    ],
)
def test_other_locations_give_file_sources(monkeypatch, location, path):
    assert _definitions(monkeypatch, location).user_profiles_source.path == path


@pytest.mark.parametrize(
    "location",
    [
        "data/sources",  # relative: to what?
        "gs://",  # no bucket
        "s3:///prefix",
        "bigquery://project",  # no dataset
        "bigquery://p.d.t",  # a table, not a dataset
        "https://storage.googleapis.com/bucket",
        "file:///tmp/sources",
    ],
)
def test_bad_locations_are_refused_naming_the_variable(monkeypatch, location):
    with pytest.raises(ValueError, match="^" + re.escape(f"{VARIABLE}={location!r}: expected ")):
        _definitions(monkeypatch, location)
