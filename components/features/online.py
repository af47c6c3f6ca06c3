"""Online lookup through the same FeatureService that training uses, with training's rules.

A feature whose online row is older than its view's TTL at lookup time is null, as the
training join nulls it; the on-demand features are then computed from those values with the
same function training uses (`apply_on_demand`), so serving sees what training saw.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.errors import InputDataError

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa
    from feast import FeatureStore

    from portside.components.features.feast_repo import ResolvedService


@dataclass(frozen=True)
class OnlineRead:
    """What one lookup read: the rows with their features, and per feature view the age in
    seconds of each row's online values (None: the store holds no row for that entity)."""

    table: pa.Table
    ages_s: dict[str, list[float | None]]


class OnlineLookup:
    """One Feast store and FeatureService, opened once for many lookups (a server's)."""

    def __init__(
        self, repo_path: str | Path, feature_service: str, full_feature_names: bool = False
    ) -> None:
        from portside.components.features.feast_repo import open_store, resolve_service

        self.store = open_store(repo_path)
        self.service = resolve_service(self.store, feature_service, full_feature_names)
        self._dtypes = _feature_types(self.store, self.service)

    def field_types(self) -> dict[str, str]:
        """What a lookup row holds: each entity key and request field and its Feast value
        type name (INT64, DOUBLE, STRING, ...)."""
        found: dict[str, str] = {}
        for view in self.service.batch_features:
            for field in self.store.get_feature_view(view.view).entity_columns:
                found.setdefault(field.name, field.dtype.to_value_type().name)
        for odfv in self.service.on_demand_views:
            for request in odfv.source_request_sources.values():
                for field in request.schema:
                    found.setdefault(field.name, field.dtype.to_value_type().name)
        needed = [*self.service.join_keys, *self.service.request_fields]
        return {name: found.get(name, "UNKNOWN") for name in needed}

    def lookup(self, rows: list[dict[str, Any]], now: datetime | None = None) -> pd.DataFrame:
        """Per row (entity keys plus request fields): the row's fields, then the service's
        features named as in the training set, fresh as of `now` (default: the current
        time)."""
        return self.lookup_table(rows, now).to_pandas()

    def lookup_table(self, rows: list[dict[str, Any]], now: datetime | None = None) -> pa.Table:
        """`lookup` as an Arrow table (what a server scores, without a pandas round trip)."""
        return self.read(rows, now).table

    def read(self, rows: list[dict[str, Any]], now: datetime | None = None) -> OnlineRead:
        """`lookup_table` and the age of the online values it read (a server's metric)."""
        import pyarrow as pa

        from portside.components.features.run import apply_on_demand

        _check_rows(rows, self.service)
        moment = _utc(now or datetime.now(timezone.utc))
        table = pa.Table.from_pylist(rows)
        features, ages = _fresh_batch_features(self.store, self.service, rows, moment, self._dtypes)
        for name, column in features.items():
            table = table.append_column(name, column)
        return OnlineRead(apply_on_demand(table, self.service), ages)


def lookup(
    repo_path: str | Path,
    feature_service: str,
    rows: list[dict[str, Any]],
    now: datetime | None = None,
    full_feature_names: bool = False,
) -> pd.DataFrame:
    """One lookup (`OnlineLookup.lookup`), opening the store for it."""
    return OnlineLookup(repo_path, feature_service, full_feature_names).lookup(rows, now)


def _check_rows(rows: list[dict[str, Any]], service: ResolvedService) -> None:
    needed = [*service.join_keys, *service.request_fields]
    for i, row in enumerate(rows):
        missing = [name for name in needed if row.get(name) is None]
        if missing:
            raise InputDataError(f"lookup row {i}: missing field(s) {', '.join(missing)}")


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment


def _fresh_batch_features(
    store: FeatureStore,
    service: ResolvedService,
    rows: list[dict[str, Any]],
    now: datetime,
    dtypes: dict[tuple[str, str], Any],
) -> tuple[dict[str, pa.Array], dict[str, list[float | None]]]:
    """Online values of every batch feature, null where older than its view's TTL at `now`;
    and per view each row's age at `now` (None where the store has no row)."""
    import pyarrow as pa
    from feast.type_map import feast_value_type_to_pa

    refs = [f"{b.view}:{f}" for b in service.batch_features for f in b.features]
    if not refs:
        return {}, {}
    entities = [{key: row[key] for key in service.join_keys} for row in rows]
    response = store.get_online_features(
        features=refs, entity_rows=entities, full_feature_names=True
    )
    values = response.to_dict()
    stamps = {
        name: [ts.ToMicroseconds() for ts in result.event_timestamps]
        for name, result in zip(
            response.proto.metadata.feature_names.val, response.proto.results, strict=True
        )
    }
    now_us = (now - datetime(1970, 1, 1, tzinfo=timezone.utc)) // timedelta(microseconds=1)
    out, ages = {}, {}
    for batch in service.batch_features:
        oldest = None if batch.ttl is None else now_us - batch.ttl // timedelta(microseconds=1)
        if batch.features:  # a view's features share their row's timestamp; 0 is "no row"
            first = stamps[f"{batch.view}__{batch.features[0]}"]
            ages[batch.view] = [(now_us - ts) / 1e6 if ts else None for ts in first]
        for feature, column in zip(batch.features, batch.columns, strict=True):
            ref = f"{batch.view}__{feature}"
            fresh = [
                value if oldest is None or ts >= oldest else None
                for value, ts in zip(values[ref], stamps[ref], strict=True)
            ]
            dtype = feast_value_type_to_pa(dtypes[(batch.view, feature)].to_value_type())
            out[column] = pa.array(fresh, type=dtype)
    return out, ages


def _feature_types(store: FeatureStore, service: ResolvedService) -> dict[tuple[str, str], Any]:
    types = {}
    for batch in service.batch_features:
        for field in store.get_feature_view(batch.view).features:
            types[(batch.view, field.name)] = field.dtype
    return types
