"""Online lookup through the same FeatureService that training uses."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


def lookup(repo_path: str | Path, feature_service: str, rows: list[dict[str, Any]]) -> pd.DataFrame:
    """Online features (plus on-demand features from the request fields) for each row."""
    from components.features.feast_repo import open_store, resolve_service

    store = open_store(repo_path)
    resolve_service(store, feature_service)  # a clear error if the service is unknown
    service = store.get_feature_service(feature_service)
    return store.get_online_features(features=service, entity_rows=rows).to_df()
