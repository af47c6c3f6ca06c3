"""Runs in its own environment (`uv run --no-project --with tritonclient[http]`): tritonclient
pins numpy's ml-dtypes below what TensorFlow here uses, so it stays out of the project's lock.

    python tests/oip_client.py URL MODEL ROWS_JSON

Asks the server with NVIDIA's real HTTP client (binary tensors, its default, and JSON) and
prints one JSON line: readiness, the model metadata and the scores of both answers.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient

DATATYPES = {"INT64": np.int64, "FP64": np.float64, "BYTES": np.object_}


def main() -> None:
    url, model, rows = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
    client = httpclient.InferenceServerClient(url.removeprefix("http://"))
    metadata = client.get_model_metadata(model)
    answers = {}
    for binary in (True, False):
        inputs = []
        for spec in metadata["inputs"]:
            values = np.array(
                [row[spec["name"]] for row in rows], dtype=DATATYPES[spec["datatype"]]
            )
            tensor = httpclient.InferInput(spec["name"], [len(rows)], spec["datatype"])
            tensor.set_data_from_numpy(values, binary_data=binary)
            inputs.append(tensor)
        output = metadata["outputs"][0]["name"]
        wanted = [httpclient.InferRequestedOutput(output, binary_data=binary)]
        result = client.infer(model, inputs, outputs=wanted, request_id="r1")
        response = result.get_response()
        answers["binary" if binary else "json"] = {
            "scores": result.as_numpy(output).tolist(),
            "model_version": response["model_version"],
            "id": response.get("id"),
        }
    # No outputs named: the client asks for binary outputs of everything the server returns.
    default = client.infer(model, inputs)
    answers["default"] = default.as_numpy(output).tolist()
    print(
        json.dumps(
            {
                "live": client.is_server_live(),
                "ready": client.is_server_ready(),
                "model_ready": client.is_model_ready(model),
                "metadata": metadata,
                "answers": answers,
            }
        )
    )


if __name__ == "__main__":
    main()
