"""Which arm answers (components.serve.arms): the canary by a stable hash of the entity keys,
its share, the champion when the challenger is not loaded, and shadow never answering; and
the challenger settings that do not fit together."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from portside.components.errors import ConfigurationError
from portside.components.serve.arms import CANARY_ARM, CHAMPION_ARM, Arms, canary_bucket
from portside.components.serve.settings import ServeSettings


def _loaded(version: str, join_keys=("user_id",)):
    service = SimpleNamespace(join_keys=list(join_keys))
    return SimpleNamespace(version=version, lookup=SimpleNamespace(service=service))


def _arms(challenger_loaded, **options) -> Arms:
    champion = SimpleNamespace(current=_loaded("3"))
    challenger = SimpleNamespace(current=challenger_loaded)
    return Arms(champion, challenger, **options)


def test_the_bucket_is_stable_across_processes_and_hosts():
    # sha256 of the keys as JSON, not Python's per-process hash(): these values must not move
    # between releases, or a rollout would reshuffle which users see the canary
    assert canary_bucket([12345]) == pytest.approx(87.55186706925335)
    assert canary_bucket(["u-1", 3]) == pytest.approx(53.05751811382141)
    assert canary_bucket([1, "a"]) != canary_bucket(["a", 1])
    assert 0 <= canary_bucket(["anything"]) < 100


@pytest.mark.parametrize("percent", [1, 10, 50, 90])
def test_the_canary_gets_its_share_of_entities(percent):
    arms = _arms(_loaded("1"), canary_percent=percent)
    champion = arms.champion.current
    chosen = [arms.answering(champion, {"user_id": u}).arm for u in range(20_000)]
    share = chosen.count(CANARY_ARM) / len(chosen) * 100
    assert share == pytest.approx(percent, abs=1.0)
    # and the same entity always reaches the same arm
    assert chosen[:100] == [arms.answering(champion, {"user_id": u}).arm for u in range(100)]


def test_the_canary_arm_scores_with_the_challenger():
    arms = _arms(_loaded("1"), canary_percent=100)
    choice = arms.answering(arms.champion.current, {"user_id": 7})
    assert (choice.arm, choice.loaded.version) == (CANARY_ARM, "1")


def test_an_unloaded_challenger_leaves_every_request_to_the_champion():
    arms = _arms(None, canary_percent=100)
    choice = arms.answering(arms.champion.current, {"user_id": 7})
    assert (choice.arm, choice.loaded.version) == (CHAMPION_ARM, "3")
    assert arms.shadowing(arms.champion.current) is None


def test_a_shadow_never_answers_but_scores_beside():
    arms = _arms(_loaded("1"), shadow=True)
    for user in range(200):
        assert arms.answering(arms.champion.current, {"user_id": user}).arm == CHAMPION_ARM
    assert arms.shadowing(arms.champion.current).version == "1"
    assert arms.challenger_arm == "shadow"


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"canary_percent": 5.0}, "need a challenger_version"),
        ({"shadow": True, "prediction_log": "log"}, "need a challenger_version"),
        ({"challenger_version": "1"}, "either canary_percent"),
        ({"challenger_version": "1", "canary_percent": 5.0, "shadow": True}, "either"),
        ({"challenger_version": "1", "shadow": True}, "set prediction_log"),
        ({"challenger_version": "1", "canary_percent": -1.0}, "between 0 and 100"),
        ({"challenger_version": "2", "model_version": "2", "canary_percent": 5.0}, "served"),
    ],
)
def test_challenger_settings_that_do_not_fit_are_refused(options, reason):
    with pytest.raises(ConfigurationError, match=reason):
        ServeSettings(feature_repo="repo", model_name="m", **options)


def test_fitting_challenger_settings_are_accepted():
    ServeSettings(feature_repo="r", model_name="m", challenger_version="1", canary_percent=10)
    ServeSettings(
        feature_repo="r", model_name="m", challenger_version="1", shadow=True, prediction_log="l"
    )
