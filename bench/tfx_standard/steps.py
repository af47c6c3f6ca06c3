"""Per-component seconds of a LocalDagRunner run, from its ML Metadata store:

    .venv-tfx/bin/python -m bench.tfx_standard.steps METADATA.sqlite SINCE_EPOCH_S

Prints a JSON list, one entry per execution created at or after SINCE_EPOCH_S, in order: the
component (its execution type's last name), its state (COMPLETE, CACHED, FAILED, ...) and the
seconds from its creation to its last update (for a cached one: the lookup).
"""

from __future__ import annotations

import json
import sys


def steps(metadata_path: str, since_s: float) -> list[dict]:
    from ml_metadata import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    store = metadata_store.MetadataStore(config)
    types = {t.id: t.name for t in store.get_execution_types()}
    out = []
    for execution in sorted(store.get_executions(), key=lambda e: e.create_time_since_epoch):
        if execution.create_time_since_epoch < since_s * 1000:
            continue
        out.append(
            {
                "component": types[execution.type_id].rsplit(".", 1)[-1],
                "state": metadata_store_pb2.Execution.State.Name(execution.last_known_state),
                "seconds": round(
                    (execution.last_update_time_since_epoch - execution.create_time_since_epoch)
                    / 1000,
                    2,
                ),
            }
        )
    return out


if __name__ == "__main__":
    print(json.dumps(steps(sys.argv[1], float(sys.argv[2]))))
