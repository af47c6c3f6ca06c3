"""Whether a cached training set still holds: the sources and definitions it read are unchanged.

Stdlib only (called on every cache hit, before anything heavy is imported).
"""

from __future__ import annotations

from typing import Any

from portside.components.lineage import content_hash


def sources_unchanged(parameters: dict[str, Any], result: dict[str, Any] | None) -> bool:
    read = (result or {}).get("read") or {}
    if not read:  # nothing recorded (e.g. a BigQuery source): never reuse
        return False
    try:
        return all(content_hash(path) == digest for path, digest in read.items())
    except FileNotFoundError:
        return False
