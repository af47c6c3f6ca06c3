"""Bulk writes of materialized rows into Feast's online stores, in the layout Feast reads.

Feast's own writers convert and write one value at a time (SQLite: one INSERT per value and
a commit per call; Redis: per-entity commands built one by one). Here the values are encoded
column-wise (`online_values`) and written in bulk:

- SQLite: one transaction per view, `executemany` into Feast's table (`<project>_<view>`:
  entity_key, feature_name, value, value_text, event_ts, created_ts), the timestamps adapted
  by the adapter Feast registers with sqlite3;
- Redis: pipelined HSETs into Feast's hash per entity (key: serialized entity key + project;
  fields: mmh3 of "view:feature", and `_ts:<view>` holding a protobuf Timestamp), with the
  stored timestamps read first in one pipeline per batch when the rule needs them.

Any other online store, or a configuration these writers do not reproduce (SQLite vector or
value_num columns, entity key serialization other than 3, a subclassed store), goes through
Feast's own `online_write_batch`.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from enum import Enum
from typing import TYPE_CHECKING, Any

from portside.components.errors import ConfigurationError
from portside.components.features.online_values import EncodedRows, encode_rows

if TYPE_CHECKING:
    import pyarrow as pa
    from feast import FeatureStore, FeatureView

_EPOCH = datetime(1970, 1, 1)


class Overwrite(Enum):
    """When a row replaces what the online store holds for its entity (by event time)."""

    ALWAYS = "always"
    NOT_OLDER = "not_older"  # an equal event time counts as newer
    NEWER = "newer"  # strictly newer: what Feast's Redis writer does


def keep(rule: Overwrite, new: Any, stored: Any) -> bool:
    if rule is Overwrite.ALWAYS or stored is None:
        return True
    return new >= stored if rule is Overwrite.NOT_OLDER else new > stored


def feast_rule(store: FeatureStore) -> Overwrite:
    """The rule Feast's own writer for this store applies (what `feast materialize` does)."""
    config = store.config.online_store
    if _exact_store(store, "redis") and not config.skip_dedup:
        return Overwrite.NEWER
    return Overwrite.ALWAYS


def open_writer(store: FeatureStore, view: FeatureView, rule: Overwrite) -> Any:
    """A context manager whose value writes one Arrow batch (the latest row per entity, no
    entity twice in a view's run) and returns how many entity rows it wrote."""
    config = store.config
    if config.entity_key_serialization_version == 3:
        if _exact_store(store, "sqlite") and not _sqlite_extras(config.online_store):
            return SqliteWriter(store, view, rule)
        if _exact_store(store, "redis"):
            return RedisWriter(store, view, rule)
    return FeastWriter(store, view, rule)


def _exact_store(store: FeatureStore, kind: str) -> bool:
    """The store is Feast's own class (not a subclass that might write differently)."""
    from feast.infra.online_stores.redis import RedisOnlineStore
    from feast.infra.online_stores.sqlite import SqliteOnlineStore

    cls = {"sqlite": SqliteOnlineStore, "redis": RedisOnlineStore}[kind]
    return type(store._get_provider().online_store) is cls


def _sqlite_extras(config: Any) -> bool:
    """Columns Feast fills only in special modes (vector search, OpenAI-compatible store)."""
    return bool(getattr(config, "vector_enabled", False)) or bool(
        getattr(config, "enable_openai_compatible_store", False)
    )


def _objects(values: list) -> Any:
    """A numpy object array of the values as they are (bytes stay bytes objects)."""
    import numpy as np

    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _created_column(view: FeatureView) -> str | None:
    return view.batch_source.created_timestamp_column or None


class SqliteWriter:
    """One transaction for the whole view: a failed run leaves the table as it was."""

    def __init__(self, store: FeatureStore, view: FeatureView, rule: Overwrite) -> None:
        from feast.infra.online_stores.sqlite import SqliteOnlineStore, _quote_id, _table_id

        config = store.config
        self.view, self.rule = view, rule
        self.path = SqliteOnlineStore._get_db_path(config)
        name = _table_id(
            config.project, view, config.registry.enable_online_feature_view_versioning
        )
        self.table = _quote_id(name)
        self.features = [field.name for field in view.features]
        self.upsert = (
            f"INSERT INTO {self.table} "
            "(entity_key, feature_name, value, value_text, event_ts, created_ts) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(entity_key, feature_name) DO UPDATE SET "
            "value = excluded.value, value_text = excluded.value_text, "
            "event_ts = excluded.event_ts, created_ts = excluded.created_ts"
        )
        self.db: sqlite3.Connection | None = None
        self._table_name = name

    def __enter__(self) -> SqliteWriter:
        # No detect_types: stored timestamps compare as stored, in the adapter's form.
        self.db = sqlite3.connect(self.path)
        exists = self.db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (self._table_name,)
        ).fetchone()
        if not exists:
            self.db.close()
            raise ConfigurationError(
                f"{self.view.name}: online table {self._table_name} not found in {self.path}; "
                "run `feast apply` first"
            )
        return self

    def __exit__(self, error_type: Any, *_: Any) -> None:
        assert self.db is not None
        if error_type is None:
            self.db.commit()
        else:
            self.db.rollback()
        self.db.close()

    def __call__(self, batch: pa.RecordBatch) -> int:
        assert self.db is not None
        rows = encode_rows(batch, self.view, _created_column(self.view), with_text=True)
        event = self._adapt(rows.event_us)
        created = self._adapt(rows.created_us or [None] * len(event))
        chosen = list(range(len(rows.keys)))
        if self.rule is not Overwrite.ALWAYS:
            stored = self._stored_event_times(rows.keys)
            chosen = [i for i in chosen if keep(self.rule, event[i], stored.get(rows.keys[i]))]
        if chosen:
            self.db.executemany(self.upsert, self._parameters(rows, chosen, event, created))
        return len(chosen)

    def _parameters(
        self, rows: EncodedRows, chosen: list[int], event: list, created: list
    ) -> Iterator[tuple]:
        """One row per (entity, feature), entity by entity (the order the rows came in),
        interleaved with numpy object arrays rather than a Python loop per value."""
        import numpy as np

        assert rows.texts is not None

        def per_value(per_row: list) -> list:
            return np.repeat(_objects(per_row)[chosen], len(self.features)).tolist()

        def interleaved(columns: dict[str, list]) -> list:
            stacked = [_objects(columns[name])[chosen] for name in self.features]
            return np.stack(stacked, axis=1).ravel().tolist()

        return zip(
            per_value(rows.keys),
            self.features * len(chosen),
            interleaved(rows.values),
            interleaved(rows.texts),
            per_value(event),
            per_value(created),
            strict=True,
        )

    @staticmethod
    def _adapt(micros: list[int | None]) -> list[Any]:
        """What sqlite3 stores for Feast's naive-UTC datetimes: Feast registers the adapter
        (epoch seconds today), so it is applied here, once per distinct time in the batch,
        rather than re-implemented."""
        adapted = {
            us: None if us is None else sqlite3.adapt(_EPOCH + timedelta(microseconds=us))
            for us in set(micros)
        }
        return [adapted[us] for us in micros]

    def _stored_event_times(self, keys: list[bytes], chunk: int = 10_000) -> dict[bytes, Any]:
        assert self.db is not None
        stored = {}
        for start in range(0, len(keys), chunk):
            part = keys[start : start + chunk]
            stored.update(
                self.db.execute(
                    f"SELECT entity_key, max(event_ts) FROM {self.table} "
                    f"WHERE entity_key IN ({','.join('?' * len(part))}) GROUP BY entity_key",
                    part,
                ).fetchall()
            )
        return stored


class RedisWriter:
    """Feast's hash layout; the pipeline per batch is sent without a transaction, as Feast's."""

    def __init__(self, store: FeatureStore, view: FeatureView, rule: Overwrite) -> None:
        from feast.infra.online_stores.helpers import _mmh3
        from feast.infra.online_stores.redis import _versioned_fv_name

        config = store.config
        self.view, self.rule = view, rule
        self.client = store._get_provider().online_store._get_client(config.online_store)
        name = _versioned_fv_name(view, config)
        self.ts_field = f"_ts:{name}".encode()
        self.fields = {field.name: _mmh3(f"{name}:{field.name}") for field in view.features}
        self.project = config.project.encode("utf-8")
        self.key_ttl = config.online_store.key_ttl_seconds

    def __enter__(self) -> RedisWriter:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def __call__(self, batch: pa.RecordBatch) -> int:
        rows = encode_rows(batch, self.view, None, with_text=False)
        keys = [key + self.project for key in rows.keys]
        chosen = range(len(keys))
        if self.rule is not Overwrite.ALWAYS:
            stored = self._stored_nanos(keys)
            chosen = [i for i in chosen if keep(self.rule, rows.event_us[i] * 1000, stored[i])]
        columns = [(self.fields[name], rows.values[name]) for name in self.fields]
        stamps = _timestamps(rows.event_us)
        with self.client.pipeline(transaction=False) as pipe:
            for i in chosen:
                fields = [self.ts_field, stamps[rows.event_us[i]]]
                for field, values in columns:
                    fields += (field, values[i])
                pipe.execute_command("HSET", keys[i], *fields)
                if self.key_ttl:
                    pipe.expire(keys[i], self.key_ttl)
            pipe.execute()
        return len(chosen)

    def _stored_nanos(self, keys: list[bytes]) -> list[int | None]:
        from google.protobuf.timestamp_pb2 import Timestamp

        with self.client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hget(key, self.ts_field)
            raw = pipe.execute()
        stored: list[int | None] = []
        for value in raw:
            if not value:
                stored.append(None)
                continue
            stamp = Timestamp()
            stamp.ParseFromString(value)
            stored.append(stamp.seconds * 1_000_000_000 + stamp.nanos)
        return stored


def _timestamps(micros: list[int]) -> dict[int, bytes]:
    """Feast's `_ts:` value per distinct time: a serialized protobuf Timestamp, as
    Timestamp.FromDatetime makes it (seconds, then non-negative nanos)."""
    from google.protobuf.timestamp_pb2 import Timestamp

    stamps = {}
    for us in set(micros):
        seconds, remainder = divmod(us, 1_000_000)
        stamps[us] = Timestamp(seconds=seconds, nanos=remainder * 1000).SerializeToString()
    return stamps


class FeastWriter:
    """Feast's own conversion and `online_write_batch`, for every other online store."""

    def __init__(self, store: FeatureStore, view: FeatureView, rule: Overwrite) -> None:
        self.store, self.view, self.rule = store, view, rule
        self.provider = store._get_provider()
        self.join_key_types = {col.name: col.dtype.to_value_type() for col in view.entity_columns}

    def __enter__(self) -> FeastWriter:
        return self

    def __exit__(self, *_: Any) -> None:
        return None

    def __call__(self, batch: pa.RecordBatch) -> int:
        from feast.utils import _convert_arrow_to_proto

        protos = _convert_arrow_to_proto(batch, self.view, self.join_key_types)
        if self.rule is not Overwrite.ALWAYS:
            stored = self.provider.online_read(self.store.config, self.view, [p[0] for p in protos])
            protos = [
                row
                for row, (stored_ts, _) in zip(protos, stored, strict=True)
                if keep(self.rule, _utc(row[2]), None if stored_ts is None else _utc(stored_ts))
            ]
        if protos:
            self.provider.online_write_batch(self.store.config, self.view, protos, progress=None)
        return len(protos)


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)
