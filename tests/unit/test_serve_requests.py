"""The server's request parsing: both protocols, every error naming what is wrong where."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from portside.components.serve.requests import RequestError, parse_infer, parse_vertex

FIELDS = {"user_id": "INT64", "amount": "DOUBLE", "merchant_category": "STRING"}
OUTPUTS = ["fraud_probability", "txn_count_30d"]


def vertex(body) -> list[dict]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_vertex(raw, FIELDS, max_instances=3).rows


def test_vertex_instances_become_typed_rows():
    rows = vertex({"instances": [{"user_id": 7.0, "amount": 3, "merchant_category": "food"}]})
    assert rows == [{"user_id": 7, "amount": 3.0, "merchant_category": "food"}]
    assert isinstance(rows[0]["user_id"], int) and isinstance(rows[0]["amount"], float)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"[1, 2", 400, "body is not JSON"),
        ({"instance": []}, 400, 'expected an object with "instances"'),
        ({"instances": {}}, 400, "instances: expected a list"),
        ({"instances": []}, 400, "instances: no instances"),
        ({"instances": [{}] * 4}, 413, "4 instances, at most 3"),
        ({"instances": [1]}, 400, "instances[0]: expected an object of user_id (INT64)"),
        (
            {"instances": [{"user_id": True, "amount": 1, "merchant_category": "a"}]},
            400,
            "instances[0].user_id: expected an integer, got true",
        ),
        (
            {"instances": [{"user_id": 1, "amount": None, "merchant_category": "a"}]},
            400,
            "instances[0].amount: missing (null)",
        ),
        (
            {"instances": [{"user_id": 1, "amount": 1, "merchant_category": 5}]},
            400,
            "instances[0].merchant_category: expected a string, got 5",
        ),
        (
            {"instances": [{"user_id": 1, "amount": 1, "merchant_category": "a", "ip": "x"}]},
            400,
            "instances[0]: unknown field(s) ip",
        ),
        (
            {
                "instances": [{"user_id": 1, "amount": 1, "merchant_category": "a"}],
                "parameters": {"explain": True},
            },
            400,
            "parameters: unknown field(s) explain",
        ),
        (
            {"instances": [{"user_id": 1, "amount": 1, "merchant_category": "a"}], "x": 1},
            400,
            "body: unknown field(s) x",
        ),
        # found by fuzzing: an id beyond INT64 once reached the store (a 503 "store error")
        (
            {"instances": [{"user_id": 2**63, "amount": 1, "merchant_category": "a"}]},
            400,
            "instances[0].user_id: 9223372036854775808 is outside INT64's range",
        ),
        (
            {"instances": [{"user_id": 1, "amount": 1, "merchant_category": "a"}], "parameters": 0},
            400,
            "body.parameters: expected an object, got 0",
        ),
    ],
)
def test_vertex_errors_name_the_field(body, status, message):
    with pytest.raises(RequestError) as refused:
        vertex(body)
    assert refused.value.status == status
    assert message in str(refused.value)


def tensor(name, datatype, data, shape=None):
    return {"name": name, "datatype": datatype, "shape": shape or [len(data)], "data": data}


def infer(document, header_length=None, binary=b""):
    raw = json.dumps(document).encode()
    length = str(len(raw)) if header_length == "auto" else header_length
    return parse_infer(raw + binary, length, FIELDS, 3, OUTPUTS)


def test_infer_json_tensors_become_rows_and_outputs_default_to_the_score():
    parsed = infer(
        {
            "id": "q1",
            "inputs": [
                tensor("user_id", "INT64", [1, 2], shape=[2, 1]),
                tensor("amount", "FP32", [1.5, 2.0]),
                tensor("merchant_category", "BYTES", ["a", "b"]),
            ],
        }
    )
    assert parsed.rows == [
        {"user_id": 1, "amount": 1.5, "merchant_category": "a"},
        {"user_id": 2, "amount": 2.0, "merchant_category": "b"},
    ]
    assert parsed.outputs == ["fraud_probability"] and parsed.request_id == "q1"
    assert not parsed.binary_outputs


def test_infer_binary_tensors_as_tritonclient_sends_them():
    users = np.array([4, 5], dtype="<i8").tobytes()
    amounts = np.array([1.25, 3.5], dtype="<f8").tobytes()
    names = b"".join(struct.pack("<I", len(s)) + s for s in (b"food", b"t\xc3\xa9l"))
    document = {
        "inputs": [
            {
                "name": "user_id",
                "datatype": "INT64",
                "shape": [2],
                "parameters": {"binary_data_size": len(users)},
            },
            {
                "name": "amount",
                "datatype": "FP64",
                "shape": [2],
                "parameters": {"binary_data_size": len(amounts)},
            },
            {
                "name": "merchant_category",
                "datatype": "BYTES",
                "shape": [2],
                "parameters": {"binary_data_size": len(names)},
            },
        ],
        "outputs": [{"name": "txn_count_30d", "parameters": {"binary_data": True}}],
    }
    parsed = infer(document, "auto", users + amounts + names)
    assert parsed.rows == [
        {"user_id": 4, "amount": 1.25, "merchant_category": "food"},
        {"user_id": 5, "amount": 3.5, "merchant_category": "tél"},
    ]
    assert parsed.outputs == ["txn_count_30d"] and parsed.binary_outputs


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"inputs": [tensor("user_id", "INT64", [1])]},
            "inputs: missing amount, merchant_category",
        ),
        ({"inputs": [tensor("age", "INT64", [1])]}, "inputs[0] (age): unknown input"),
        ({"inputs": [tensor("user_id", "FP64", [1.0])]}, "inputs[0] (user_id): datatype 'FP64'"),
        (
            {"inputs": [tensor("user_id", "INT64", [1], shape=[3])]},
            "inputs[0] (user_id): shape [3] does not hold 1 elements",
        ),
        (
            {"inputs": [tensor("user_id", "INT64", [1]), tensor("user_id", "INT64", [1])]},
            "inputs[1] (user_id): given twice",
        ),
        (
            {
                "inputs": [
                    tensor("user_id", "INT64", [1]),
                    tensor("amount", "FP64", [1.0, 2.0]),
                    tensor("merchant_category", "BYTES", ["a"]),
                ]
            },
            "every input needs the same number of elements (user_id 1, amount 2",
        ),
        (
            {"inputs": [tensor("user_id", "INT64", ["x"])]},
            "inputs[0] (user_id)[0]: expected an integer",
        ),
        (
            {
                "inputs": [
                    tensor("user_id", "INT64", [1]),
                    tensor("amount", "FP64", [1.0]),
                    tensor("merchant_category", "BYTES", ["a"]),
                ],
                "outputs": [{"name": "secret"}],
            },
            "outputs[0] (secret): unknown output",
        ),
        # found by fuzzing: each of these was a 500
        (
            {"inputs": [{**tensor("user_id", "INT64", [1]), "parameters": -1.5}]},
            "inputs[0] (user_id).parameters: expected an object, got -1.5",
        ),
        (
            {"inputs": [tensor("user_id", "INT64", [1], shape=["1"])]},
            "inputs[0] (user_id): shape ['1'] does not hold 1 elements",
        ),
        (
            {"inputs": [{**tensor("user_id", "INT64", [1]), "datatype": ["INT64"]}]},
            "inputs[0] (user_id): datatype: expected a string",
        ),
        (
            {
                "inputs": [
                    tensor("user_id", "INT64", [1]),
                    tensor("amount", "FP64", [1.0]),
                    tensor("merchant_category", "BYTES", ["a"]),
                ],
                "parameters": [],
            },
            "body.parameters: expected an object, got []",
        ),
    ],
)
def test_infer_errors_name_the_input(document, message):
    with pytest.raises(RequestError) as refused:
        infer(document)
    assert refused.value.status == 400
    assert message in str(refused.value)


def test_infer_binary_sizes_are_checked():
    document = {
        "inputs": [
            {
                "name": "user_id",
                "datatype": "INT64",
                "shape": [2],
                "parameters": {"binary_data_size": 16},
            }
        ]
    }
    with pytest.raises(RequestError, match="binary_data_size 16 exceeds the binary data"):
        infer(document, "auto", b"\0" * 8)
    with pytest.raises(RequestError, match="inference-header-content-length: 999"):
        infer(document, "999")
