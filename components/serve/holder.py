"""A model the server scores with (the registry's champion, or a pinned version) and its hot
swap when the registry's champion alias moves.

A request takes `holder.current` once and uses that `Loaded` model throughout, so the version
it reports is the one that scored it. A new champion is downloaded and loaded beside the old
one and then swapped in with one assignment: no request fails or waits for the swap. A
registry that cannot be read keeps the old model serving (and says so in `error`).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.push.champion import CHAMPION

if TYPE_CHECKING:
    from portside.components.common.model_io import ServingModel
    from portside.components.features.online import OnlineLookup
    from portside.components.push.champion import ChampionRef, ChampionRegistry

log = logging.getLogger("portside.serve")


@dataclass(frozen=True)
class Loaded:
    """One champion version, ready to score: its model and the lookup of its features."""

    version: str
    model: ServingModel
    lookup: OnlineLookup
    field_types: dict[str, str]  # what an instance holds (entity keys, request fields)
    folder: Path  # its files (a scratch copy, removed when it is no longer served)

    @property
    def output(self) -> str:
        return self.model.spec.output

    @property
    def feature_columns(self) -> list[str]:
        return self.model.spec.columns


class ModelHolder:
    """One model of `registry`, refreshed by `refresh()` (the server calls it every reload
    interval, off the event loop): `version` "champion" follows the champion alias, a version
    number pins that version."""

    def __init__(
        self,
        registry: ChampionRegistry,
        feature_repo: str,
        scratch: Path,
        version: str = CHAMPION,
    ) -> None:
        self.registry = registry
        self.feature_repo = feature_repo
        self.scratch = scratch
        self.version = version
        self.current: Loaded | None = None
        self.error: str | None = f"{self.describe()} is not loaded yet"
        self._previous: Loaded | None = None
        self._refreshing = threading.Lock()

    def describe(self) -> str:
        return "the champion" if self.version == CHAMPION else f"v{self.version}"

    def refresh(self) -> bool:
        """Load the model if it is not the one served; True when it swapped."""
        with self._refreshing:
            try:
                return self._refresh()
            except Exception as error:  # noqa: BLE001  (keep serving; say why in health)
                self.error = f"cannot load {self.describe()} of {self.registry.name}: {error}"
                log.warning(self.error)
                return False

    def _wanted(self) -> ChampionRef | None:
        if self.version == CHAMPION:
            return self.registry.current_champion()
        return self.registry.version_ref(self.version)

    def _refresh(self) -> bool:
        from portside.components.common.model_io import ServingModel
        from portside.components.features.online import OnlineLookup

        served = self.current
        if served is not None and self.version != CHAMPION:
            return False  # a pinned version never moves
        champion = self._wanted()
        if champion is None:
            self.error = f"model {self.registry.name!r} has no champion in {self.registry.uri}"
            return False
        if served is not None and served.version == champion.version:
            self.error = None
            return False
        folder = Path(tempfile.mkdtemp(prefix=f"v{champion.version}-", dir=self.scratch))
        files = self.registry.champion_files(champion, folder)
        model = ServingModel(files)
        service = model.spec.feature_service
        if not service:
            raise ValueError(f"v{champion.version}: its feature_spec.json names no feature service")
        if served is not None and served.lookup.service.name == service:
            lookup = served.lookup  # the same store and service: keep the open store
        else:
            lookup = OnlineLookup(self.feature_repo, service)
        loaded = Loaded(champion.version, model, lookup, lookup.field_types(), folder)
        self._retire(self._previous)
        self._previous, self.current, self.error = served, loaded, None
        log.info("serving %s v%s (%s)", self.registry.name, champion.version, self.describe())
        return True

    def _retire(self, loaded: Loaded | None) -> None:
        """Remove the files of a version two swaps old: no request can still be using it
        (a request holds its model for well under a reload interval)."""
        if loaded is not None:
            shutil.rmtree(loaded.folder, ignore_errors=True)
