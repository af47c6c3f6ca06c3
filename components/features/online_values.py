"""Column-wise encoding of feature rows into the bytes Feast's online stores hold.

Feast converts every value on its own (`python_values_to_proto_values`, then one ValueProto per
value); here each column is converted once: floating columns are packed with numpy into the
ValueProto wire format (tag byte + little-endian value), every other column is dictionary
encoded and only its distinct values go through Feast's own converter. Entity keys use
Feast's key serialization (entity_key_serialization_version 3), packed column-wise for the
common single integer key. The results are byte-for-byte what Feast writes (tested).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import TYPE_CHECKING

from portside.components.errors import ConfigurationError, InputDataError

if TYPE_CHECKING:
    import pyarrow as pa
    from feast import FeatureView
    from feast.value_type import ValueType

# ValueProto field tags (field number << 3 | wire type) of the packed floating types.
_DOUBLE_TAG, _FLOAT_TAG = 0x29, 0x35  # double_val = 5 (64-bit), float_val = 6 (32-bit)


@dataclass(frozen=True)
class EncodedRows:
    """One batch of a view's rows as Feast stores them.

    keys: serialized entity keys; values: per feature, a serialized ValueProto per row (b""
    for null, as Feast writes it); texts: per feature, the `value_text` Feast's SQL stores keep
    (only when asked for); event_us / created_us: microseconds since the epoch, UTC."""

    keys: list[bytes]
    values: dict[str, list[bytes]]
    texts: dict[str, list[str | None]] | None
    event_us: list[int]
    created_us: list[int | None] | None


def encode_rows(
    batch: pa.RecordBatch, view: FeatureView, created_column: str | None, with_text: bool
) -> EncodedRows:
    """The batch's entity keys, feature values and timestamps, encoded as Feast writes them."""
    join_keys = {col.name: col.dtype.to_value_type() for col in view.entity_columns}
    values, texts = {}, {} if with_text else None
    for field in view.features:
        values[field.name], text = encode_column(
            batch.column(field.name), field.dtype.to_value_type(), with_text
        )
        if texts is not None:
            texts[field.name] = text
    timestamp = view.batch_source.timestamp_field
    return EncodedRows(
        keys=serialize_entity_keys(batch, join_keys, view.name),
        values=values,
        texts=texts,
        event_us=micros(batch.column(timestamp), f"{view.name}.{timestamp}"),
        created_us=(
            micros(batch.column(created_column), f"{view.name}.{created_column}")
            if created_column
            else None
        ),
    )


def encode_column(
    array: pa.Array, value_type: ValueType, with_text: bool = False
) -> tuple[list[bytes], list[str | None] | None]:
    """Serialized ValueProtos of one column, and (with_text) Feast's `value_text` of each."""
    import pyarrow as pa
    from feast.value_type import ValueType

    if pa.types.is_floating(array.type) and value_type in (ValueType.DOUBLE, ValueType.FLOAT):
        return _encode_floats(array, value_type == ValueType.DOUBLE, with_text)
    try:
        encoded = array.dictionary_encode()
    except pa.ArrowNotImplementedError:  # lists and other types: Feast's per-value path
        return _encode_distinct(array, value_type, with_text)
    distinct, distinct_text = _encode_distinct(encoded.dictionary, value_type, with_text)
    # The null index points one past the distinct values: Feast writes an empty ValueProto.
    indices = encoded.indices.fill_null(len(distinct)).to_numpy().tolist()
    distinct.append(b"")
    values = [distinct[i] for i in indices]
    if distinct_text is None:
        return values, None
    distinct_text.append(None)
    return values, [distinct_text[i] for i in indices]


def _encode_floats(
    array: pa.Array, double: bool, with_text: bool
) -> tuple[list[bytes], list[str | None] | None]:
    import numpy as np

    # Nulls come out as NaN, and Feast stores NaN as null too.
    numbers = array.to_numpy(zero_copy_only=False).astype("<f8" if double else "<f4")
    present = (~np.isnan(numbers)).tolist()
    packed = np.empty(len(numbers), dtype=[("tag", "u1"), ("value", numbers.dtype)])
    packed["tag"] = _DOUBLE_TAG if double else _FLOAT_TAG
    packed["value"] = numbers
    raw, width = packed.tobytes(), packed.itemsize
    values = [
        raw[start : start + width] if ok else b""
        for start, ok in zip(range(0, len(raw), width), present, strict=True)
    ]
    if not with_text:
        return values, None
    # Feast's value_text is str() of the proto's value: the float as Python prints it.
    texts = [str(v) if ok else None for v, ok in zip(numbers.tolist(), present, strict=True)]
    return values, texts


def _encode_distinct(
    array: pa.Array, value_type: ValueType, with_text: bool
) -> tuple[list[bytes], list[str | None] | None]:
    """Through Feast's own converter, as `_convert_arrow_to_proto` calls it."""
    from feast.infra.online_stores.helpers import extract_text_and_num
    from feast.type_map import python_values_to_proto_values

    if len(array) == 0:
        return [], [] if with_text else None
    protos = python_values_to_proto_values(array.to_numpy(zero_copy_only=False), value_type)
    values = [proto.SerializeToString() for proto in protos]
    if not with_text:
        return values, None
    return values, [extract_text_and_num(proto, False)[0] for proto in protos]


def serialize_entity_keys(
    batch: pa.RecordBatch, join_keys: dict[str, ValueType], view_name: str
) -> list[bytes]:
    """Feast's `serialize_entity_key` (version 3) of every row's entity key."""
    import pyarrow as pa
    from feast.value_type import ValueType

    for name in join_keys:
        if batch.column(name).null_count:
            raise InputDataError(f"{view_name}: join key column {name!r} has null values")
    if len(join_keys) == 1:
        ((name, value_type),) = join_keys.items()
        column = batch.column(name)
        if value_type == ValueType.INT64 and pa.types.is_integer(column.type):
            return _int64_keys(name, column)
    return _keys_through_feast(batch, join_keys)


def key_order(join_keys: dict[str, ValueType]) -> list[str]:
    """SQL ORDER BY terms that sort rows by their serialized entity key, where SQL can say it:
    a single int64 key serializes as a fixed prefix and its little-endian bytes, so the
    order is its bytes from the lowest up. Rows written in key order fill SQLite's indexes
    in order (measured: 2.6x faster than arbitrary order for 100k entities x 7 values)."""
    from feast.value_type import ValueType

    if len(join_keys) != 1 or next(iter(join_keys.values())) != ValueType.INT64:
        return []
    (name,) = join_keys
    return [f'("{name}" >> {8 * byte}) & 255' for byte in range(8)]


def _int64_keys(name: str, column: pa.Array) -> list[bytes]:
    """Version 3 layout: key count, then per key name (type STRING, length, utf-8), then per
    value (type, length, little-endian bytes)."""
    from feast.value_type import ValueType

    encoded_name = name.encode("utf8")
    prefix = struct.pack("<III", 1, ValueType.STRING.value, len(encoded_name)) + encoded_name
    prefix += struct.pack("<II", ValueType.INT64.value, 8)
    raw = column.to_numpy().astype("<i8").tobytes()
    return [prefix + raw[start : start + 8] for start in range(0, len(raw), 8)]


def _keys_through_feast(batch: pa.RecordBatch, join_keys: dict[str, ValueType]) -> list[bytes]:
    from feast.infra.key_encoding_utils import serialize_entity_key
    from feast.protos.feast.types.EntityKey_pb2 import EntityKey
    from feast.type_map import python_values_to_proto_values

    names = list(join_keys)
    columns = [
        python_values_to_proto_values(batch.column(n).to_numpy(zero_copy_only=False), t)
        for n, t in join_keys.items()
    ]
    return [
        serialize_entity_key(
            EntityKey(join_keys=names, entity_values=list(values)),
            entity_key_serialization_version=3,
        )
        for values in zip(*columns, strict=True)
    ]


def micros(array: pa.Array, name: str) -> list[int | None]:
    """Microseconds since the epoch (UTC; naive timestamps are UTC, as Feast reads them)."""
    import pyarrow as pa

    if not pa.types.is_timestamp(array.type):
        raise ConfigurationError(f"{name}: expected a timestamp column, got {array.type}")
    # Feast goes through Python datetimes, which hold microseconds: nanoseconds are cut.
    as_us = array.cast(pa.timestamp("us", tz=array.type.tz), safe=False)
    return as_us.cast(pa.int64()).to_pylist()
