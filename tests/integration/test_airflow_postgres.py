"""The production metadata-DB configuration (deploy/airflow/values.yaml) on the local
PostgreSQL: `airflow db migrate`, then a DAG of dags/ runs with it as its metadata DB.

Airflow runs in subprocesses with their own AIRFLOW_HOME and a throwaway database
`portside_airflow_<random>`, dropped afterwards.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from airflow_env import DAGS, AirflowHome, airflow_environment
from conftest import BIN, DATA_END, make_workspace, run_cli
from mlflow_server import PG_HOST, PG_PORT, PG_USER, create_database, drop_database

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
VALUES = ROOT / "deploy" / "airflow" / "values.yaml"
DAG_ID = "feature_materialization"
# The chart sets it from data.metadataSecretName's key `connection`.
CHART_CONNECTION_ENV = "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"


def metadata_db_environment(url: str) -> dict[str, str]:
    """What the Helm values give every Airflow container for the metadata DB, with `url` as the
    secret's `connection`: the chart's SQL_ALCHEMY_CONN, the values' extra variables from the
    same secret key, and config.database as AIRFLOW__DATABASE__* settings."""
    values = yaml.safe_load(VALUES.read_text())
    secret = values["data"]["metadataSecretName"]
    env = {CHART_CONNECTION_ENV: url}
    for item in values.get("secret", []):
        if item["secretName"] == secret and item["secretKey"] == "connection":
            env[item["envName"]] = url
    for key, value in values["config"]["database"].items():
        env[f"AIRFLOW__DATABASE__{key.upper()}"] = str(value)
    return env


def timed(home: AirflowHome, *args: str) -> str:
    """`airflow ARGS` in `home`; its output. Prints how long it took."""
    started = time.monotonic()
    done = home.airflow(*args)
    print(f"airflow {' '.join(args[:2])}: {time.monotonic() - started:.1f} s")
    return done.stdout + done.stderr


def query(database: str, sql: str, *params) -> list[tuple]:
    import psycopg

    with psycopg.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database) as conn:
        return conn.execute(sql, params).fetchall()


@pytest.fixture(scope="module")
def database():
    name = create_database("portside_airflow")
    yield name
    drop_database(name)


@pytest.fixture(scope="module")
def home(database: str, tmp_path_factory: pytest.TempPathFactory) -> AirflowHome:
    """An Airflow home whose metadata DB is `database`, configured as the Helm values do."""
    path = tmp_path_factory.mktemp("airflow_home")
    url = f"postgresql+psycopg://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"
    return AirflowHome(path, DAGS, airflow_environment(path, DAGS, metadata_db_environment(url)))


def test_values_take_the_async_url_from_the_same_secret():
    env = metadata_db_environment("postgresql+psycopg://u@h/db")
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_ASYNC"] == env[CHART_CONNECTION_ENV]


def test_db_migrate(home: AirflowHome, database: str):
    timed(home, "db", "migrate")
    (version,) = query(database, "SELECT version_num FROM alembic_version")
    assert version[0]
    tables = {row[0] for row in query(database, "SELECT tablename FROM pg_tables")}
    assert {"dag", "dag_run", "task_instance", "asset_event", "serialized_dag"} <= tables
    timed(home, "db", "check-migrations", "--migration-wait-timeout", "10")  # the chart's wait


def test_dag_run_with_postgres_metadata(home: AirflowHome, database: str, tmp_path: Path):
    """`airflow dags test` of the hourly materialization over small generated data: the run,
    its task and the "features fresh" Asset event are rows in PostgreSQL."""
    workspace = make_workspace(tmp_path)
    run_cli([str(BIN / "feast"), "apply"], cwd=workspace.repo)
    logical_date = DATA_END.isoformat()
    conf = json.dumps({"feature_repo": str(workspace.repo)})
    timed(home, "dags", "test", DAG_ID, logical_date, "--conf", conf)

    runs = query(database, "SELECT run_id, state FROM dag_run WHERE dag_id = %s", DAG_ID)
    assert [state for _, state in runs] == ["success"], runs
    tasks = query(
        database,
        "SELECT task_id, state, try_number FROM task_instance WHERE dag_id = %s",
        DAG_ID,
    )
    assert tasks == [("materialize", "success", 1)], tasks
    events = query(
        database,
        "SELECT a.name FROM asset_event e JOIN asset a ON a.id = e.asset_id"
        " WHERE e.source_dag_id = %s",
        DAG_ID,
    )
    assert events == [("features_fresh",)], events
