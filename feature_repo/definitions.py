"""Feast definitions for the fraud model: the single source of truth for training and serving.

Training (`components.features`) and the online path both resolve features through the
`fraud_model_v1` FeatureService below. Source files live in `<repo root>/data/sources/`
(written by `portside data generate`); the path is resolved from this file's location so
`feast apply` works from any working directory.
"""

from datetime import timedelta
from pathlib import Path

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, RequestSource
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64, Int64, String
from feast.value_type import ValueType

SOURCES = Path(__file__).resolve().parent.parent / "data" / "sources"

user = Entity(
    name="user",
    join_keys=["user_id"],
    value_type=ValueType.INT64,
    description="A card holder.",
)

user_profiles_source = FileSource(
    name="user_profiles_source",
    path=str(SOURCES / "user_profiles.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)

user_daily_aggregates_source = FileSource(
    name="user_daily_aggregates_source",
    path=str(SOURCES / "user_daily_aggregates.parquet"),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)

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
