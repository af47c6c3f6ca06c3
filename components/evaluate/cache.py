"""A cached evaluation holds while the champion it was compared against is still the champion."""

from __future__ import annotations

from typing import Any

from portside.components.common.registry_state import UNKNOWN, champion_version


def same_champion(parameters: dict[str, Any], result: dict[str, Any] | None) -> bool:
    if not result or parameters.get("registry", "mlflow") != "mlflow":
        return False  # only the SQLite registry can be re-read this cheaply
    current = champion_version(parameters.get("tracking_uri", ""), parameters["model_name"])
    compared = (result.get("champion") or {}).get("version")
    return current != UNKNOWN and current == compared
