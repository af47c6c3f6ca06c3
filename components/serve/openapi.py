"""The server's OpenAPI 3 document (`GET /openapi.json`), built from the served champion's
instance fields, so clients can generate code against it and the tests can fuzz the server
with it (schemathesis). The schemas say exactly what `components.serve.requests` accepts for
the Vertex AI route; the OIP route's tensors are described as far as JSON Schema can (a shape
that does not match its data is a 400 the document lists)."""

from __future__ import annotations

from typing import Any

from portside.components.serve.requests import INT_RANGES, OIP_DATATYPES

_JSON_TYPES = {"DOUBLE": "number", "FLOAT": "number", "STRING": "string", "BOOL": "boolean"}


def field_schema(value_type: str) -> dict[str, Any]:
    """JSON Schema of one instance field of Feast value type `value_type`."""
    if value_type in INT_RANGES:
        low, high = INT_RANGES[value_type]
        return {"type": "integer", "minimum": low, "maximum": high}
    if value_type in _JSON_TYPES:
        return {"type": _JSON_TYPES[value_type]}
    return {}


def _tensor_schema(name: str, value_type: str, max_instances: int) -> dict[str, Any]:
    """One OIP input tensor for the field `name`: its datatypes, and its elements as JSON data
    (or, with the binary tensor extension, `parameters.binary_data_size` instead)."""
    every = sorted({datatype for kinds in OIP_DATATYPES.values() for datatype in kinds})
    return {
        "type": "object",
        "properties": {
            "name": {"type": "string", "enum": [name]},
            "shape": {"type": "array", "items": {"type": "integer", "minimum": 0}, "minItems": 1},
            "datatype": {"type": "string", "enum": sorted(OIP_DATATYPES.get(value_type, every))},
            "data": {"type": "array", "items": field_schema(value_type), "maxItems": max_instances},
            "parameters": {"type": "object"},
        },
        "required": ["name", "shape", "datatype"],
    }


def _error(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


ERRORS = {
    "400": _error("the request does not fit the schema; the message names the field"),
    "404": _error("no such model is served here"),
    "413": _error("too many instances or too large a body"),
    "503": _error("no model is loaded or the online store cannot be read; the reason"),
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def openapi_document(
    model_name: str,
    output: str,
    field_types: dict[str, str],
    predict_route: str,
    health_route: str,
    max_instances: int,
) -> dict[str, Any]:
    instance = {
        "type": "object",
        "properties": {name: field_schema(kind) for name, kind in field_types.items()},
        "required": list(field_types),
        "additionalProperties": False,
    }
    vertex_request = {
        "type": "object",
        "properties": {
            "instances": {
                "type": "array",
                "items": instance,
                "minItems": 1,
                "maxItems": max_instances,
            },
            "parameters": {
                "type": "object",
                "properties": {
                    "return_features": {"type": "boolean"},
                    "request_id": {
                        "oneOf": [{"type": "string"}, {"type": "integer"}],
                        "description": "Names the request in the prediction log (labels "
                        "arriving later are matched to it).",
                    },
                },
                "additionalProperties": False,
            },
        },
        "required": ["instances"],
        "additionalProperties": False,
    }
    prediction = {
        "type": "object",
        "properties": {
            output: {"type": "number"},
            "model_version": {"type": "string"},
            "features": {"type": "object"},
        },
        "required": [output, "model_version"],
    }
    vertex_response = {
        "type": "object",
        "properties": {"predictions": {"type": "array", "items": prediction}},
        "required": ["predictions"],
    }
    tensors = [_tensor_schema(name, kind, max_instances) for name, kind in field_types.items()]
    infer_request = {
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "inputs": {
                "type": "array",
                "items": {"oneOf": tensors},
                "minItems": 1,
                "maxItems": len(tensors),
            },
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"name": {"type": "string"}, "parameters": {"type": "object"}},
                    "required": ["name"],
                },
            },
            "parameters": {"type": "object"},
        },
        "required": ["inputs"],
    }
    infer_response = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "object"}},
        },
        "required": ["model_name", "model_version", "outputs"],
    }
    status = {"type": "object"}
    return {
        "openapi": "3.0.3",
        "info": {"title": f"Portside prediction server: {model_name}", "version": "1"},
        "paths": {
            predict_route: {
                "post": {
                    "summary": "Score instances (Vertex AI custom-container contract)",
                    "requestBody": {"required": True, **_json(vertex_request, "instances")},
                    "responses": {"200": _json(vertex_response, "one prediction per instance")}
                    | ERRORS,
                }
            },
            health_route: {
                "get": {
                    "summary": "Vertex AI health check",
                    "responses": {"200": _json(status, "ready"), "503": ERRORS["503"]},
                }
            },
            f"/v2/models/{model_name}/infer": {
                "post": {
                    "summary": "Score tensors (Open Inference Protocol v2)",
                    "requestBody": {"required": True, **_json(infer_request, "input tensors")},
                    "responses": {"200": _json(infer_response, "output tensors")} | ERRORS,
                }
            },
            "/v2/health/live": {"get": {"responses": {"200": _json(status, "live")}}},
            "/v2/health/ready": {
                "get": {"responses": {"200": _json(status, "ready"), "503": ERRORS["503"]}}
            },
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "properties": {"error": {"type": "string"}},
                    "required": ["error"],
                }
            }
        },
    }
