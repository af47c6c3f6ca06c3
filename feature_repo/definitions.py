"""Feast definitions for the fraud model: the single source of truth for training and serving.

Training (`components.features`) and the online path both resolve features through the
`fraud_model_v1` FeatureService below.

Where the offline tables live comes from `PORTSIDE_FEATURE_SOURCES` when `feast apply` runs
(Feast records each source's location in the registry then; readers take it from there):

- unset or empty: `<repo root>/data/sources/` (written by `portside data generate`), resolved
  from this file's location so `feast apply` works from any working directory;
- an absolute directory, or object storage `gs://BUCKET/PREFIX` / `s3://BUCKET/PREFIX`:
  Parquet files `<location>/<table>.parquet`;
- `bigquery://PROJECT.DATASET`: BigQuery tables `PROJECT.DATASET.<table>`.
"""

import os
import re
from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import (
    BigQuerySource,
    Entity,
    FeatureService,
    FeatureView,
    Field,
    FileSource,
    RequestSource,
)
from feast.data_source import DataSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

SOURCES_VARIABLE = "PORTSIDE_FEATURE_SOURCES"
EMBEDDED_SOURCES = Path(__file__).resolve().parent.parent / "data" / "sources"
ACCEPTED = (
    "an absolute directory, gs://BUCKET/PREFIX, s3://BUCKET/PREFIX or bigquery://PROJECT.DATASET"
)
# Every table carries when a row became true (event) and when it landed (created).
TIMESTAMPS = {"timestamp_field": "event_timestamp", "created_timestamp_column": "created_timestamp"}


def sources_location() -> str:
    """$PORTSIDE_FEATURE_SOURCES, else the embedded data/sources.

    Read when Feast loads this file, which is the only time a Feast repo can take settings: the
    registry keeps the sources as they were at `feast apply`.
    """
    return os.environ.get(SOURCES_VARIABLE, "").strip() or str(EMBEDDED_SOURCES)


def batch_source(table: str, location: str) -> DataSource:
    """The offline source named `<table>_source` for `table` under `location`."""
    name = f"{table}_source"
    scheme, separator, rest = location.partition("://")
    if not separator and Path(location).is_absolute():
        return FileSource(name=name, path=str(Path(location) / f"{table}.parquet"), **TIMESTAMPS)
    if scheme in ("gs", "s3") and rest.split("/", 1)[0]:
        path = f"{location.rstrip('/')}/{table}.parquet"
        return FileSource(name=name, path=path, **TIMESTAMPS)
    if scheme == "bigquery" and re.fullmatch(r"[A-Za-z0-9-]+\.[A-Za-z0-9_]+", rest):
        return BigQuerySource(name=name, table=f"{rest}.{table}", **TIMESTAMPS)
    raise ValueError(f"{SOURCES_VARIABLE}={location!r}: expected {ACCEPTED}")


SOURCES = sources_location()

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A card holder.",
)

user_profiles_source = batch_source("user_profiles", SOURCES)
user_daily_aggregates_source = batch_source("user_daily_aggregates", SOURCES)

user_profile = FeatureView(
    name="user_profile",
    entities=[user],
    # Profiles change rarely; a profile version stays valid for a year.
    ttl=timedelta(days=365),
    schema=[
        Field(name="account_age_days", dtype=Int64),
        Field(name="credit_limit", dtype=Float64),
        Field(name="country", dtype=String),
    ],
    source=user_profiles_source,
    online=True,
    description="Account profile, versioned by update time.",
)

user_daily_aggregates = FeatureView(
    name="user_daily_aggregates",
    entities=[user],
    # The batch job runs daily; a user with no activity for a week has no recent aggregates.
    ttl=timedelta(days=7),
    schema=[
        Field(name="txn_count_1d", dtype=Int64),
        Field(name="txn_amount_1d", dtype=Float64),
        Field(name="txn_count_7d", dtype=Int64),
        Field(name="txn_amount_7d", dtype=Float64),
        Field(name="txn_count_30d", dtype=Int64),
        Field(name="txn_amount_30d", dtype=Float64),
        Field(name="avg_amount_30d", dtype=Float64),
    ],
    source=user_daily_aggregates_source,
    online=True,
    description="Per-user spending aggregates from the daily batch job.",
)

transaction_request = RequestSource(
    name="transaction",
    schema=[
        Field(name="amount", dtype=Float64),
        Field(name="merchant_category", dtype=String),
    ],
    description="Fields of the transaction being scored, known only at request time.",
)


@on_demand_feature_view(
    sources=[user_daily_aggregates, user_profile, transaction_request],
    schema=[
        Field(name="amount_to_avg_30d", dtype=Float64),
        Field(name="amount_to_credit_limit", dtype=Float64),
    ],
    mode="pandas",
    description="Request-time ratios of the transaction amount to the user's history.",
)
def transaction_ratios(inputs: pd.DataFrame) -> pd.DataFrame:
    # Missing history (new users, expired TTL) gives NaN, never a division error.
    avg = inputs["avg_amount_30d"].astype("float64").where(inputs["avg_amount_30d"] > 0)
    limit = inputs["credit_limit"].astype("float64").where(inputs["credit_limit"] > 0)
    out = pd.DataFrame(index=inputs.index)
    out["amount_to_avg_30d"] = inputs["amount"].astype("float64") / avg
    out["amount_to_credit_limit"] = inputs["amount"].astype("float64") / limit
    return out


fraud_model_v1 = FeatureService(
    name="fraud_model_v1",
    features=[user_profile, user_daily_aggregates, transaction_ratios],
    description="Features of the fraud model, used by training and by the serving endpoint.",
)
