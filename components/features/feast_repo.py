"""Reads a FeatureService out of the Feast registry: the single source of truth.

Turns its feature views into `ViewSource`s for the DuckDB point-in-time join and computes a
location-independent hash of the definitions the training set depends on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.errors import ConfigurationError
from portside.components.features.pit_join import ViewSource

if TYPE_CHECKING:
    from feast import FeatureStore
    from feast.on_demand_feature_view import OnDemandFeatureView


@dataclass(frozen=True)
class BatchFeatures:
    """One batch view's features in a service: Feast's names and the training set's names."""

    view: str
    features: tuple[str, ...]
    columns: tuple[str, ...]  # prefixed with the view's name under full feature names
    ttl: timedelta | None


@dataclass(frozen=True)
class ResolvedService:
    name: str
    views: list[ViewSource]
    on_demand_views: list[OnDemandFeatureView]
    join_keys: list[str]
    request_fields: list[str]
    definition_hash: str
    # The batch sources the DuckDB join cannot read (not Parquet files), e.g.
    # "user_profile (BigQuerySource p.d.user_profiles)"; empty when it can read them all.
    other_sources: list[str]
    # Every batch view of the service, whatever its source (the online path needs them all).
    batch_features: list[BatchFeatures]
    full_feature_names: bool
    # The service's feature columns as the training set names them, in service order.
    feature_columns: list[str]

    @property
    def file_sources_only(self) -> bool:
        """Every batch source is a Parquet file the DuckDB join can read directly."""
        return not self.other_sources


def open_store(repo_path: str | Path) -> FeatureStore:
    repo = Path(repo_path).resolve()
    if not (repo / "feature_store.yaml").is_file():
        raise ConfigurationError(f"{repo}: no feature_store.yaml; is this a Feast repo?")
    from feast import FeatureStore

    return FeatureStore(repo_path=str(repo))


def resolve_service(
    store: FeatureStore, name: str, full_feature_names: bool = False
) -> ResolvedService:
    from feast.errors import FeatureServiceNotFoundException

    try:
        service = store.get_feature_service(name)
    except FeatureServiceNotFoundException as error:
        raise ConfigurationError(
            f"feature service {name!r} is not in the registry of {store.repo_path}; "
            "run `feast apply` in the feature repo first"
        ) from error
    views, odfvs, described, batches, columns = [], [], [], [], []
    join_keys: set[str] = set()
    other_sources: list[str] = []
    for projection in service.feature_view_projections:
        kind, view = _lookup_view(store, projection.name)
        names = tuple(f.name for f in projection.features)
        prefix = projection.name_to_use() + "__" if full_feature_names else ""
        named = tuple(prefix + name for name in names)
        columns += named
        if kind == "on_demand":
            odfvs.append(view.with_projection(projection))
            described.append(_describe_on_demand(view, projection))
            continue
        join_keys.update(view.join_keys)
        batches.append(BatchFeatures(view.name, names, named, _ttl(view)))
        source = _view_source(store, view, projection, full_feature_names)
        if source is None:
            other_sources.append(_describe_source(view))
        else:
            views.append(source)
        described.append(_describe_view(view, projection))
    request_fields = sorted(
        {f.name for odfv in odfvs for rs in odfv.source_request_sources.values() for f in rs.schema}
    )
    digest = hashlib.sha256(
        json.dumps({"service": name, "views": described}, sort_keys=True).encode()
    ).hexdigest()
    return ResolvedService(
        name,
        views,
        odfvs,
        sorted(join_keys),
        request_fields,
        digest,
        other_sources,
        batches,
        full_feature_names,
        columns,
    )


def _describe_source(view: Any) -> str:
    source = view.batch_source
    where = getattr(source, "path", None) or getattr(source, "table", None) or source.name
    return f"{view.name} ({type(source).__name__} {where})"


def _ttl(view: Any) -> timedelta | None:
    """The view's TTL; Feast reads zero (or none) as "never expires"."""
    return view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None


def _lookup_view(store: FeatureStore, name: str) -> tuple[str, Any]:
    from feast.errors import FeatureViewNotFoundException, OnDemandFeatureViewNotFoundException

    try:
        return "batch", store.get_feature_view(name)
    except FeatureViewNotFoundException:
        pass
    try:
        return "on_demand", store.get_on_demand_feature_view(name)
    except OnDemandFeatureViewNotFoundException as error:
        raise ConfigurationError(f"feature view {name!r} is not in the registry") from error


def _view_source(
    store: FeatureStore, view: Any, projection: Any, full_feature_names: bool
) -> ViewSource | None:
    from feast import FileSource

    source = view.batch_source
    if not isinstance(source, FileSource) or not source.path.endswith(".parquet"):
        return None
    if any(char in source.path for char in "*?["):  # a glob: row numbers restart per file
        return None
    if projection.join_key_map:
        raise ConfigurationError(
            f"{view.name}: join key mapping in a FeatureService is not supported"
        )
    to_source = {feature: column for column, feature in (source.field_mapping or {}).items()}
    prefix = projection.name_to_use() + "__" if full_feature_names else ""
    features = tuple((to_source.get(f.name, f.name), prefix + f.name) for f in projection.features)
    path = source.path
    if not Path(path).is_absolute() and "://" not in path:
        path = str(Path(store.repo_path) / path)
    return ViewSource(
        name=view.name,
        path=path,
        join_keys=tuple(view.join_keys),
        timestamp_field=source.timestamp_field,
        created_timestamp_field=source.created_timestamp_column or None,
        ttl=_ttl(view),
        features=features,
    )


def _describe_view(view: Any, projection: Any) -> dict[str, Any]:
    source = view.batch_source
    return {
        "name": view.name,
        "entities": sorted(view.join_keys),
        "ttl_seconds": view.ttl.total_seconds() if view.ttl else 0,
        "features": [(f.name, str(f.dtype)) for f in projection.features],
        "timestamp_field": source.timestamp_field,
        "created_timestamp_column": source.created_timestamp_column,
        "source": Path(getattr(source, "path", "") or source.name).name,
    }


def _describe_on_demand(view: Any, projection: Any) -> dict[str, Any]:
    return {
        "name": view.name,
        "features": [(f.name, str(f.dtype)) for f in projection.features],
        "sources": sorted(view.source_feature_view_projections)
        + sorted(view.source_request_sources),
        "transformation": view.feature_transformation.udf_string,
    }
