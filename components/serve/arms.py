"""Which model answers a request: the champion, or an optional challenger on a canary share of
the traffic, or in shadow (scored beside the champion and logged, never returned).

The canary arm is chosen by a hash of the request's first instance's entity keys, not at
random: the same entity reaches the same arm on every request and every replica, so a user
does not flip between models, and the A/B readout compares stable groups.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from portside.components.serve.holder import Loaded, ModelHolder

CHAMPION_ARM = "champion"
CANARY_ARM = "canary"
SHADOW_ARM = "shadow"


def canary_bucket(keys: Sequence[Any]) -> float:
    """A stable position in [0, 100) for these entity key values (the same on every host)."""
    text = json.dumps(list(keys), default=str, separators=(",", ":"))
    digest = hashlib.sha256(text.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * 100


@dataclass(frozen=True)
class Choice:
    arm: str
    loaded: Loaded


@dataclass
class Arms:
    """The champion holder, and the challenger's with its canary share or shadow mode."""

    champion: ModelHolder
    challenger: ModelHolder | None = None
    canary_percent: float = 0.0
    shadow: bool = False

    @property
    def challenger_arm(self) -> str:
        return SHADOW_ARM if self.shadow else CANARY_ARM

    def holders(self) -> list[ModelHolder]:
        return [self.champion] + ([self.challenger] if self.challenger else [])

    def answering(self, champion: Loaded, first_row: dict[str, Any]) -> Choice:
        """The arm whose model answers a request whose first instance is `first_row`; the
        champion when the canary's model is not loaded (health says why)."""
        challenger = self._challenger(champion)
        if challenger is None or self.shadow or self.canary_percent <= 0:
            return Choice(CHAMPION_ARM, champion)
        keys = [first_row.get(key) for key in champion.lookup.service.join_keys]
        if canary_bucket(keys) < self.canary_percent:
            return Choice(CANARY_ARM, challenger)
        return Choice(CHAMPION_ARM, champion)

    def shadowing(self, champion: Loaded) -> Loaded | None:
        """The shadow model to score the request beside the answer, if there is one."""
        return self._challenger(champion) if self.shadow else None

    def _challenger(self, champion: Loaded) -> Loaded | None:
        """The loaded challenger, unless it is the version the champion serves (the champion
        alias moved onto it): comparing a model with itself is no A/B."""
        loaded = self.challenger.current if self.challenger else None
        return None if loaded is None or loaded.version == champion.version else loaded
