"""Request bodies of both protocols, checked strictly and turned into lookup rows.

An instance is the entity keys plus the request-time fields of the model's FeatureService
(`OnlineLookup.field_types`). Every error names what is wrong where (`instances[2].amount`,
`inputs[1] (amount)`), so a client can fix its request without reading server logs.

- Vertex AI: `{"instances": [{field: value, ...}, ...], "parameters": {"return_features": true}}`;
  `parameters.request_id` (text or an integer) names the request in the prediction log, as the
  open inference protocol's `id` does: labels that arrive later are matched to predictions by it.
- Open Inference Protocol v2: one input tensor per field, `{"inputs": [{"name", "shape",
  "datatype", "data"}, ...], "outputs": [{"name"}, ...]}`, JSON data or the binary tensor
  extension that tritonclient sends by default (`Inference-Header-Content-Length`).
"""

from __future__ import annotations

import json
import math
import struct
from dataclasses import dataclass, field
from typing import Any

# Feast integer value types and the values they hold (a larger one cannot be looked up)
INT_RANGES = {"INT64": (-(2**63), 2**63 - 1), "INT32": (-(2**31), 2**31 - 1)}
FLOAT_TYPES = {"DOUBLE", "FLOAT"}
# Feast value type -> the OIP datatypes a client may send for it.
OIP_DATATYPES = {
    "INT64": {"INT64", "INT32", "INT16", "INT8", "UINT32", "UINT16", "UINT8"},
    "INT32": {"INT32", "INT16", "INT8", "UINT16", "UINT8"},
    "DOUBLE": {"FP64", "FP32", "INT64", "INT32"},
    "FLOAT": {"FP32", "FP64", "INT64", "INT32"},
    "STRING": {"BYTES"},
    "BOOL": {"BOOL"},
}
# numpy dtypes of the binary tensor extension, by OIP datatype (little-endian)
BINARY_DTYPES = {
    "BOOL": "?",
    "INT8": "<i1",
    "INT16": "<i2",
    "INT32": "<i4",
    "INT64": "<i8",
    "UINT8": "<u1",
    "UINT16": "<u2",
    "UINT32": "<u4",
    "FP32": "<f4",
    "FP64": "<f8",
}
HEADER_LENGTH = "inference-header-content-length"


class RequestError(Exception):
    """A request the server will not score: HTTP `status` with a message naming the field."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class ScoringRequest:
    rows: list[dict[str, Any]]
    return_features: bool = False
    # OIP: the outputs asked for (empty: the score only), whether as binary tensors, the id
    outputs: list[str] = field(default_factory=list)
    binary_outputs: bool = False
    request_id: str | None = None


def check_value(value: object, value_type: str, where: str) -> object:
    """`value` as the Feast `value_type` holds it, or a RequestError naming `where`."""
    if value is None:
        raise RequestError(f"{where}: missing (null)")
    if value_type in INT_RANGES:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise RequestError(f"{where}: expected an integer, got {_shown(value)}")
        low, high = INT_RANGES[value_type]
        if not low <= value <= high:
            raise RequestError(f"{where}: {value} is outside {value_type}'s range")
        return value
    if value_type in FLOAT_TYPES:
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and math.isfinite(value):
            return float(value)
        raise RequestError(f"{where}: expected a finite number, got {_shown(value)}")
    if value_type == "STRING":
        if isinstance(value, str):
            return value
        raise RequestError(f"{where}: expected a string, got {_shown(value)}")
    if value_type == "BOOL":
        if isinstance(value, bool):
            return value
        raise RequestError(f"{where}: expected true or false, got {_shown(value)}")
    return value  # a type the server does not check further (Feast checks it)


def _shown(value: object) -> str:
    text = json.dumps(value) if isinstance(value, (str, int, float, bool, list, dict)) else "?"
    return text if len(text) <= 40 else text[:37] + "..."


def _count(n: int, max_instances: int, what: str) -> None:
    if n == 0:
        raise RequestError(f"{what}: no instances")
    if n > max_instances:
        raise RequestError(f"{what}: {n} instances, at most {max_instances} per request", 413)


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise RequestError(f"body is not JSON: {error}") from None


def parse_vertex(body: bytes, field_types: dict[str, str], max_instances: int) -> ScoringRequest:
    """`{"instances": [...], "parameters": {...}}` into lookup rows."""
    document = parse_json(body)
    if not isinstance(document, dict) or "instances" not in document:
        raise RequestError('body: expected an object with "instances": [...]')
    unknown = sorted(set(document) - {"instances", "parameters"})
    if unknown:
        raise RequestError(f"body: unknown field(s) {', '.join(unknown)}")
    instances = document["instances"]
    if not isinstance(instances, list):
        raise RequestError("instances: expected a list")
    _count(len(instances), max_instances, "instances")
    rows = []
    for i, instance in enumerate(instances):
        if not isinstance(instance, dict):
            raise RequestError(f"instances[{i}]: expected an object of {_fields(field_types)}")
        extra = sorted(set(instance) - set(field_types))
        if extra:
            raise RequestError(
                f"instances[{i}]: unknown field(s) {', '.join(extra)} "
                f"(an instance holds {_fields(field_types)})"
            )
        rows.append(
            {
                name: check_value(instance.get(name), kind, f"instances[{i}].{name}")
                for name, kind in field_types.items()
            }
        )
    parameters = _object(document, "parameters", "body")
    extra = sorted(set(parameters) - {"return_features", "request_id"})
    if extra:
        raise RequestError(f"parameters: unknown field(s) {', '.join(extra)}")
    return_features = parameters.get("return_features", False)
    if not isinstance(return_features, bool):
        raise RequestError("parameters.return_features: expected true or false")
    request_id = parameters.get("request_id")
    if request_id is not None and (
        isinstance(request_id, bool) or not isinstance(request_id, (str, int))
    ):
        raise RequestError("parameters.request_id: expected text or an integer")
    return ScoringRequest(
        rows,
        return_features=return_features,
        request_id=None if request_id is None else str(request_id),
    )


def _fields(field_types: dict[str, str]) -> str:
    return ", ".join(f"{name} ({kind})" for name, kind in field_types.items())


def split_binary(body: bytes, header_length: str | None) -> tuple[bytes, bytes]:
    """The JSON header and the binary tensor data that follows it (empty without one)."""
    if header_length is None:
        return body, b""
    try:
        length = int(header_length)
    except ValueError:
        raise RequestError(f"{HEADER_LENGTH}: expected a number, got {header_length!r}") from None
    if not 0 <= length <= len(body):
        raise RequestError(f"{HEADER_LENGTH}: {length} is not within the body's {len(body)} bytes")
    return body[:length], body[length:]


def _binary_values(raw: bytes, datatype: str, where: str) -> list[Any]:
    import numpy as np

    if datatype == "BYTES":  # each element: 4-byte little-endian length, then the bytes
        values, offset = [], 0
        while offset < len(raw):
            if offset + 4 > len(raw):
                raise RequestError(f"{where}: truncated BYTES element")
            (size,) = struct.unpack_from("<I", raw, offset)
            offset += 4
            if offset + size > len(raw):
                raise RequestError(f"{where}: truncated BYTES element")
            values.append(raw[offset : offset + size])
            offset += size
        return values
    dtype = BINARY_DTYPES.get(datatype)
    if dtype is None:
        raise RequestError(f"{where}: datatype {datatype} is not supported")
    if len(raw) % np.dtype(dtype).itemsize:
        raise RequestError(f"{where}: {len(raw)} bytes is not a whole number of {datatype}")
    return np.frombuffer(raw, dtype=dtype).tolist()


def _tensor_values(
    tensor: dict[str, Any], binary: bytes, offset: int, where: str
) -> tuple[list[Any], int]:
    """A tensor's elements, flattened, and the offset after its binary data."""
    size = _object(tensor, "parameters", where).get("binary_data_size")
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise RequestError(f"{where}: binary_data_size {size} exceeds the binary data")
        end = offset + size
        return _binary_values(binary[offset:end], tensor["datatype"], where), end
    if "data" not in tensor:
        raise RequestError(f"{where}: no data")
    return _flatten(tensor["data"]), offset


def _flatten(data: Any) -> list[Any]:
    if not isinstance(data, list):
        return [data]
    flat: list[Any] = []
    for item in data:
        flat.extend(_flatten(item) if isinstance(item, list) else [item])
    return flat


def parse_infer(
    body: bytes,
    header_length: str | None,
    field_types: dict[str, str],
    max_instances: int,
    known_outputs: list[str],
) -> ScoringRequest:
    """An OIP v2 inference request: one input per field, all of the same length."""
    header, binary = split_binary(body, header_length)
    document = parse_json(header)
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        raise RequestError('body: expected an object with "inputs": [...]')
    columns: dict[str, list[Any]] = {}
    offset = 0
    for i, tensor in enumerate(document["inputs"]):
        where = f"inputs[{i}]"
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            raise RequestError(f"{where}: expected an object with a name")
        name = tensor["name"]
        where = f"inputs[{i}] ({name})"
        if name not in field_types:
            raise RequestError(f"{where}: unknown input (the inputs are {_fields(field_types)})")
        if name in columns:
            raise RequestError(f"{where}: given twice")
        datatype = tensor.get("datatype")
        if not isinstance(datatype, str):
            raise RequestError(f"{where}: datatype: expected a string, got {_shown(datatype)}")
        allowed = OIP_DATATYPES.get(field_types[name])
        if allowed is not None and datatype not in allowed:
            raise RequestError(
                f"{where}: datatype {datatype!r}, expected {' or '.join(sorted(allowed))}"
            )
        values, offset = _tensor_values(tensor, binary, offset, where)
        shape = tensor.get("shape")
        if not _is_shape(shape) or math.prod(shape) != len(values):
            raise RequestError(f"{where}: shape {shape} does not hold {len(values)} elements")
        if datatype == "BYTES":
            values = [_text(v, f"{where}[{j}]") for j, v in enumerate(values)]
        kind = field_types[name]
        columns[name] = [check_value(v, kind, f"{where}[{j}]") for j, v in enumerate(values)]
    missing = [name for name in field_types if name not in columns]
    if missing:
        raise RequestError(f"inputs: missing {', '.join(missing)}")
    lengths = {len(values) for values in columns.values()}
    if len(lengths) != 1:
        shown = ", ".join(f"{name} {len(values)}" for name, values in columns.items())
        raise RequestError(f"inputs: every input needs the same number of elements ({shown})")
    _count(lengths.pop(), max_instances, "inputs")
    outputs, binary_outputs = _requested_outputs(document, known_outputs)
    names = list(columns)
    rows = [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]
    request_id = document.get("id")
    return ScoringRequest(
        rows,
        outputs=outputs,
        binary_outputs=binary_outputs,
        request_id=str(request_id) if request_id is not None else None,
    )


def _is_shape(shape: Any) -> bool:
    return isinstance(shape, list) and all(
        isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in shape
    )


def _object(document: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """`document[key]` when it is an object; {} when absent or null; else a RequestError."""
    value = document.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RequestError(f"{where}.{key}: expected an object, got {_shown(value)}")
    return value


def _text(value: Any, where: str) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            raise RequestError(f"{where}: not UTF-8 text") from None
    return value


def _requested_outputs(document: dict[str, Any], known: list[str]) -> tuple[list[str], bool]:
    """The outputs asked for (default: the first known, the score) and whether binary."""
    binary = bool(_object(document, "parameters", "body").get("binary_data_output", False))
    asked = document.get("outputs")
    if asked is None:
        return [known[0]], binary
    if not isinstance(asked, list):
        raise RequestError("outputs: expected a list")
    names = []
    for i, output in enumerate(asked):
        if not isinstance(output, dict) or not isinstance(output.get("name"), str):
            raise RequestError(f"outputs[{i}]: expected an object with a name")
        if output["name"] not in known:
            raise RequestError(
                f"outputs[{i}] ({output['name']}): unknown output (known: {', '.join(known)})"
            )
        names.append(output["name"])
        parameters = _object(output, "parameters", f"outputs[{i}]")
        binary = binary or bool(parameters.get("binary_data", False))
    return names or [known[0]], binary
