"""The champion as evaluate judges against it and push swaps it: registry-neutral records.

Evaluate writes `blessing.json` with `registry` (which registry and model it consulted) and
`champion` (the version it compared against, null for the explicit first run). Push moves the
champion only while both still describe the registry it writes to (compare-and-swap).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from portside.components.errors import ConfigurationError, GateFailed, InputDataError

CHAMPION = "champion"  # the alias evaluate judges against and push moves


@dataclass(frozen=True)
class ChampionRef:
    version: str
    content_hash: str | None
    location: str = field(compare=False)  # where its files are (MLflow source, gs:// folder)


class ChampionRegistry(Protocol):
    kind: str  # "mlflow" | "vertex"
    uri: str  # tracking URI, or projects/P/locations/L
    name: str  # registered model / display name

    def current_champion(self) -> ChampionRef | None: ...

    def champion_files(self, champion: ChampionRef, scratch: str | Path) -> Path: ...

    def version_ref(self, version: str) -> ChampionRef: ...


def identity(registry: ChampionRegistry) -> dict[str, str]:
    return {"kind": registry.kind, "uri": registry.uri, "model_name": registry.name}


def open_registry(
    kind: str,
    model_name: str,
    tracking_uri: str = "",
    vertex_project: str = "",
    vertex_location: str = "",
    vertex_api_endpoint: str = "",
) -> ChampionRegistry:
    """The registry evaluate compares against (the one push publishes to)."""
    if kind == "vertex":
        from portside.components.push.vertex import VertexRegistry

        return VertexRegistry(vertex_project, vertex_location, vertex_api_endpoint, model_name)
    from portside.components.push.registry import Registry

    return Registry(tracking_uri, model_name)


def resolve_version(registry: ChampionRegistry, version: str) -> ChampionRef:
    """A version by its number, or the current champion for "champion"; its files are at
    `registry.champion_files(ref, scratch)`."""
    if version != CHAMPION:
        return registry.version_ref(version)
    champion = registry.current_champion()
    if champion is None:
        raise ConfigurationError(
            f"model {registry.name!r} has no champion in {registry.uri}; name a version"
        )
    return champion


def describe(version: str | None) -> str:
    return f"v{version}" if version is not None else "no champion (first run)"


def expected_champion(
    blessing: dict[str, Any], path: Path, registry: ChampionRegistry
) -> str | None:
    """The champion version the blessing was judged against; refuses a blessing that does
    not say, or that was judged against another registry."""
    missing = [key for key in ("registry", "champion") if key not in blessing]
    if missing:
        raise InputDataError(
            f"{path}: no {' or '.join(repr(k) for k in missing)} field: it was written by an "
            "evaluate that did not record which champion it compared against; re-run evaluate"
        )
    if blessing["registry"] != identity(registry):
        raise GateFailed(
            f"{path}: judged against the champion of {blessing['registry']}, but push writes to "
            f"{identity(registry)}; nothing moved"
        )
    champion = blessing["champion"]
    if champion is not None and not isinstance(champion.get("version"), str):
        raise InputDataError(f"{path}: field 'champion.version' must be a string")
    return None if champion is None else champion["version"]


def refuse_if_moved(expected: str | None, current: str | None) -> None:
    if current != expected:
        raise GateFailed(
            f"champion changed since evaluation: evaluated against {describe(expected)}, "
            f"the champion is now {describe(current)}; nothing moved"
        )
