"""A cached push holds while the version it pushed is still the champion."""

from __future__ import annotations

from typing import Any

from portside.components.common.registry_state import UNKNOWN, champion_version


def still_champion(parameters: dict[str, Any], result: dict[str, Any] | None) -> bool:
    if not result or parameters.get("registry") != "mlflow":
        return False
    current = champion_version(parameters.get("tracking_uri", ""), parameters["model_name"])
    return current != UNKNOWN and current == result.get("version")
