"""Point-in-time join (DuckDB) checked against independent plain-pandas references.

- ``feast`` semantics: ``pd.merge_asof(direction="backward", by="user_id")`` per view, after
  keeping the row with the greatest created timestamp per (user_id, event_timestamp), then
  nulling values older than t - ttl.
- ``as_known`` (and ``feast`` again, as a cross-check): brute force over every
  (entity row, feature row) pair of the same user, small data only.

All reference arithmetic is done on int64 microseconds since the epoch, so it does not share
timestamp/interval handling with the code under test.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from portside.components.features import pit_join
from portside.components.features.pit_join import ViewSource, point_in_time_join

TS = pa.timestamp("us", tz="UTC")
US = 1_000_000
HOUR = 3600 * US
DAY = 24 * HOUR
# 2024-03-01: the 30-day window spans a daylight-saving change in most zones.
BASE_US = int(datetime(2024, 3, 1, tzinfo=timezone.utc).timestamp()) * US
N_USERS = 12  # users 0..11 have feature history ...
NO_HISTORY_USERS = (12, 13, 14)  # ... these do not
TTL_A = timedelta(days=2)
TTL_B = timedelta(days=3, hours=5, seconds=7)
SEEDS = range(8)


def _us(delta: timedelta | None) -> int | None:
    return None if delta is None else delta // timedelta(microseconds=1)


# ---------------------------------------------------------------------------------------------
# data


def _feature_rows(rng: np.random.Generator, n: int, first_version: int) -> pd.DataFrame:
    """Random feature rows: on-time, late (created days after the event), a few created
    before the event, backfills (same user & event timestamp, created later, new value)."""
    user = rng.integers(0, N_USERS, n)
    # hourly grid so that equal event timestamps (ties) are common; some rows off-grid
    ts = BASE_US + rng.integers(0, 30 * 24, n) * HOUR
    off_grid = rng.random(n) < 0.2
    ts = ts + np.where(off_grid, rng.integers(1, HOUR, n), 0)
    kind = rng.random(n)
    lag = np.where(
        kind < 0.15,
        0,  # created == event
        np.where(
            kind < 0.60,
            rng.integers(1, HOUR, n),  # on time
            np.where(
                kind < 0.95,
                rng.integers(1 * DAY, 5 * DAY, n),  # late
                -rng.integers(1, DAY, n),  # created before the event
            ),
        ),
    )
    rows = pd.DataFrame({"user_id": user, "ts": ts, "created": ts + lag})
    # backfills: same user and event timestamp, created later, different value
    picked = rows.sample(frac=0.3, random_state=rng.integers(2**31)).copy()
    picked["created"] = picked["created"] + rng.integers(HOUR, 6 * DAY, len(picked))
    rows = pd.concat([rows, picked], ignore_index=True)
    # Exact duplicate (user, event_ts, created_ts) rows are dropped: which one of them wins is
    # undefined (tie order), so values could legitimately differ from a reference.
    rows = rows.drop_duplicates(["user_id", "ts", "created"], ignore_index=True)
    rows["value"] = rng.normal(size=len(rows)).round(6)
    rows.loc[rng.random(len(rows)) < 0.05, "value"] = np.nan  # a null value is still a value
    rows["row_version"] = np.arange(first_version, first_version + len(rows), dtype=np.int64)
    # sources are not sorted
    return rows.iloc[rng.permutation(len(rows))].reset_index(drop=True)


def _write_parquet(rows: pd.DataFrame, path: Path) -> str:
    table = pa.table(
        {
            "user_id": pa.array(rows["user_id"].to_numpy(np.int64)),
            "event_timestamp": pa.array(rows["ts"].to_numpy(np.int64), type=pa.int64()).cast(TS),
            "created_timestamp": pa.array(rows["created"].to_numpy(np.int64), type=pa.int64()).cast(
                TS
            ),
            "value": pa.array(rows["value"], type=pa.float64(), from_pandas=True),
            "row_version": pa.array(rows["row_version"].to_numpy(np.int64)),
        }
    )
    pq.write_table(table, path)
    return str(path)


def _view(name: str, path: str, ttl: timedelta | None) -> ViewSource:
    return ViewSource(
        name=name,
        path=path,
        join_keys=("user_id",),
        timestamp_field="event_timestamp",
        created_timestamp_field="created_timestamp",
        ttl=ttl,
        features=(("value", f"{name}_value"), ("row_version", f"{name}_row_version")),
    )


def _entity_rows(
    rng: np.random.Generator, views: dict[str, tuple[pd.DataFrame, int]]
) -> pd.DataFrame:
    """Entity rows hitting every edge: random times, exactly on an event timestamp, exactly on
    a created timestamp, one microsecond before those, exactly at the TTL boundary and one
    microsecond beyond, users without history; then duplicated and shuffled."""
    parts = []
    n_random = 80
    parts.append(
        pd.DataFrame(
            {
                "user_id": rng.choice(np.r_[np.arange(N_USERS), NO_HISTORY_USERS], n_random),
                "t": BASE_US + rng.integers(-2 * DAY, 40 * DAY, n_random),
            }
        )
    )
    for rows, ttl_us in views.values():
        for column, shifts in (
            ("ts", (0, -1)),
            ("created", (0, -1)),
            ("ts", (ttl_us, ttl_us + 1)),  # t - ttl == event_ts included; 1 us more excluded
        ):
            sample = rows.sample(n=15, random_state=rng.integers(2**31))
            for shift in shifts:
                parts.append(
                    pd.DataFrame({"user_id": sample["user_id"], "t": sample[column] + shift})
                )
    # users without history, at times when other users have feature rows
    some_rows = next(iter(views.values()))[0].sample(n=10, random_state=rng.integers(2**31))
    parts.append(
        pd.DataFrame(
            {"user_id": rng.choice(NO_HISTORY_USERS, len(some_rows)), "t": some_rows["ts"]}
        )
    )
    entities = pd.concat(parts, ignore_index=True)
    duplicates = entities.sample(frac=0.15, random_state=rng.integers(2**31))
    entities = pd.concat([entities, duplicates], ignore_index=True)
    entities = entities.iloc[rng.permutation(len(entities))].reset_index(drop=True)
    entities["label"] = np.arange(len(entities), dtype=np.int64)  # a passthrough column
    return entities


def _entity_table(entities: pd.DataFrame) -> pa.Table:
    return pa.table(
        {
            "user_id": pa.array(entities["user_id"].to_numpy(np.int64)),
            "event_timestamp": pa.array(entities["t"].to_numpy(np.int64)).cast(TS),
            "label": pa.array(entities["label"].to_numpy(np.int64)),
        }
    )


class Scenario:
    def __init__(self, seed: int, tmp_path: Path, ttl_b: timedelta | None = TTL_B) -> None:
        rng = np.random.default_rng(seed)
        self.rows = {"a": _feature_rows(rng, 120, 0), "b": _feature_rows(rng, 90, 100_000)}
        self.ttl = {"a": TTL_A, "b": ttl_b}
        self.views = [
            _view(name, _write_parquet(rows, tmp_path / f"{name}.parquet"), self.ttl[name])
            for name, rows in self.rows.items()
        ]
        # the TTL-boundary entity rows for a view without TTL just land 1 us apart
        self.entities = _entity_rows(
            rng,
            {name: (rows, _us(self.ttl[name]) or DAY) for name, rows in self.rows.items()},
        )
        self.table = _entity_table(self.entities)


# ---------------------------------------------------------------------------------------------
# references


def _feast_reference(
    entities: pd.DataFrame, rows: pd.DataFrame, ttl_us: int | None
) -> pd.DataFrame:
    """merge_asof reference for `feast` semantics; one row per entity row, in input order."""
    latest = rows.sort_values(["user_id", "ts", "created"]).drop_duplicates(
        ["user_id", "ts"], keep="last"
    )
    left = entities[["user_id", "t"]].assign(rid=np.arange(len(entities))).sort_values("t")
    merged = pd.merge_asof(
        left,
        latest[["user_id", "ts", "created", "value", "row_version"]].sort_values("ts"),
        left_on="t",
        right_on="ts",
        by="user_id",
        direction="backward",
        allow_exact_matches=True,
    )
    merged = merged.sort_values("rid").reset_index(drop=True)
    if ttl_us is not None:
        stale = merged["ts"] < merged["t"] - ttl_us
        merged.loc[stale, ["ts", "created", "value", "row_version"]] = np.nan
    return merged[["ts", "created", "value", "row_version"]]


def _brute_force_reference(
    entities: pd.DataFrame, rows: pd.DataFrame, ttl_us: int | None, semantics: str
) -> pd.DataFrame:
    """Every (entity row, feature row) pair of the same user; keep the available ones within
    TTL; take the one with the greatest (event_ts, created_ts) per entity row."""
    left = entities[["user_id", "t"]].assign(rid=np.arange(len(entities)))
    pairs = left.merge(rows, on="user_id", how="inner")
    available = pairs["ts"] <= pairs["t"]
    if semantics == "as_known":
        available &= pairs["created"] <= pairs["t"]
    if ttl_us is not None:
        available &= pairs["ts"] >= pairs["t"] - ttl_us
    pairs = pairs[available]
    # idxmax of (event_ts, created_ts) per entity row: sort lexicographically, keep the last
    best = pairs.sort_values(["rid", "ts", "created"]).drop_duplicates("rid", keep="last")
    best = best.set_index("rid").reindex(np.arange(len(entities)))
    return best[["ts", "created", "value", "row_version"]].reset_index(drop=True)


def _as_list(series: pd.Series, kind: type) -> list:
    return [None if pd.isna(x) else kind(x) for x in series]


def _check_against(result: pa.Table, references: dict[str, pd.DataFrame]) -> None:
    for name, expected in references.items():
        assert result.column(f"{name}_row_version").to_pylist() == _as_list(
            expected["row_version"], int
        ), f"view {name}: different source rows"
        assert result.column(f"{name}_value").to_pylist() == _as_list(expected["value"], float), (
            f"view {name}: different values"
        )


# ---------------------------------------------------------------------------------------------
# randomized comparisons


# Rows are matched by window + ASOF join or by brute-force pairs (few entity rows per key);
# features are fetched by a join on the row number (few entity rows) or read whole and taken.
PLANS = {  # (PAIRS_ROWS_PER_KEY, JOIN_FETCH_RATIO)
    "asof, whole": (0, 10**12),
    "asof, join": (0, 0),
    "pairs, join": (10**12, 0),
    "pairs, whole": (10**12, 10**12),
}


@pytest.fixture(autouse=True, params=sorted(PLANS))
def plan(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test of this module runs under each plan."""
    pairs, fetch = PLANS[request.param]
    monkeypatch.setattr(pit_join, "PAIRS_ROWS_PER_KEY", pairs)
    monkeypatch.setattr(pit_join, "JOIN_FETCH_RATIO", fetch)
    return request.param


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
@pytest.mark.parametrize("seed", SEEDS)
def test_matches_reference(seed: int, semantics: str, tmp_path: Path) -> None:
    s = Scenario(seed, tmp_path)
    result = point_in_time_join(s.table, s.views, "event_timestamp", semantics)

    # same rows, same order, entity columns untouched, features appended
    assert result.num_rows == s.table.num_rows
    assert result.select(s.table.column_names).equals(s.table)
    assert result.column_names == s.table.column_names + [
        "a_value",
        "a_row_version",
        "b_value",
        "b_row_version",
    ]

    brute = {
        n: _brute_force_reference(s.entities, s.rows[n], _us(s.ttl[n]), semantics) for n in s.rows
    }
    _check_against(result, brute)
    if semantics == "feast":
        asof = {n: _feast_reference(s.entities, s.rows[n], _us(s.ttl[n])) for n in s.rows}
        # the two references agree with each other, and with the join
        for n in s.rows:
            pd.testing.assert_frame_equal(asof[n], brute[n], check_dtype=False)
        _check_against(result, asof)


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
@pytest.mark.parametrize("seed", SEEDS[:4])
def test_no_future_leakage(seed: int, semantics: str, tmp_path: Path) -> None:
    s = Scenario(seed, tmp_path)
    result = point_in_time_join(s.table, s.views, semantics=semantics)
    for name, rows in s.rows.items():
        by_version = rows.set_index("row_version")
        ttl_us = _us(s.ttl[name])
        versions = result.column(f"{name}_row_version").to_pylist()
        values = result.column(f"{name}_value").to_pylist()
        used = 0
        for (user, t), version, value in zip(
            s.entities[["user_id", "t"]].itertuples(index=False), versions, values, strict=True
        ):
            if version is None:
                assert value is None
                continue
            used += 1
            source = by_version.loc[version]
            assert source["user_id"] == user
            assert source["ts"] <= t, "feature event after the entity event"
            if semantics == "as_known":
                assert source["created"] <= t, "feature row created after the entity event"
            if ttl_us is not None:
                assert source["ts"] >= t - ttl_us, "feature row older than the TTL"
            assert (value is None and pd.isna(source["value"])) or value == source["value"]
        assert used > 0


@pytest.mark.parametrize("seed", SEEDS[:4])
def test_random_data_exercises_the_edges(seed: int, tmp_path: Path) -> None:
    """The generated data really contains the cases the comparison is meant to cover."""
    s = Scenario(seed, tmp_path)
    for name, rows in s.rows.items():
        ttl_us = _us(s.ttl[name])
        known = _brute_force_reference(s.entities, rows, ttl_us, "as_known")
        feast = _feast_reference(s.entities, rows, ttl_us)
        # semantics differ somewhere (late rows / backfills created after t)
        assert (known["row_version"].fillna(-1) != feast["row_version"].fillna(-1)).any()
        # rows with and without a usable value, and users without history
        assert known["row_version"].notna().any() and known["row_version"].isna().any()
        assert s.entities["user_id"].isin(NO_HISTORY_USERS).any()
        # some entity row sits exactly on the TTL boundary and uses that row
        at_boundary = feast["ts"] == s.entities["t"] - ttl_us
        assert at_boundary.any()
        # some entity row sits exactly on a created timestamp and uses that row (as_known)
        assert (known["created"] == s.entities["t"]).any()
        # duplicated entity rows
        assert s.entities.duplicated(["user_id", "t"]).any()
        # backfills (same user and event timestamp, several created timestamps)
        assert rows.duplicated(["user_id", "ts"]).any()


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
def test_view_without_ttl_matches_reference(semantics: str, tmp_path: Path) -> None:
    s = Scenario(100, tmp_path, ttl_b=None)
    result = point_in_time_join(s.table, s.views, semantics=semantics)
    brute = {
        n: _brute_force_reference(s.entities, s.rows[n], _us(s.ttl[n]), semantics) for n in s.rows
    }
    _check_against(result, brute)
    # without a TTL, every entity row of a user with history after their first row has a value
    first = s.rows["b"].groupby("user_id")["ts"].min()
    after_first = s.entities["t"] >= s.entities["user_id"].map(first)
    if semantics == "feast":
        assert brute["b"]["row_version"][after_first].notna().all()


@pytest.mark.parametrize("timezone_name", ["America/New_York", "Asia/Kolkata"])
def test_session_time_zone_does_not_matter(timezone_name: str, tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    s = Scenario(7, tmp_path)
    con = duckdb.connect()
    try:
        con.execute(f"SET TimeZone = '{timezone_name}'")
    except duckdb.Error:
        pytest.skip("no ICU time zones in this DuckDB")
    for semantics in ("as_known", "feast"):
        expected = point_in_time_join(s.table, s.views, semantics=semantics)
        assert point_in_time_join(s.table, s.views, semantics=semantics, connection=con).equals(
            expected
        )


# ---------------------------------------------------------------------------------------------
# focused cases


T0 = datetime(2024, 5, 1, 12, tzinfo=timezone.utc)


def _table(rows: list[tuple[int, datetime, datetime, float, int]]) -> pa.Table:
    user, ts, created, value, version = zip(*rows, strict=True)
    return pa.table(
        {
            "user_id": pa.array(user, pa.int64()),
            "event_timestamp": pa.array(ts, TS),
            "created_timestamp": pa.array(created, TS),
            "value": pa.array(value, pa.float64()),
            "row_version": pa.array(version, pa.int64()),
        }
    )


def _entities(rows: list[tuple[int, datetime]]) -> pa.Table:
    user, t = zip(*rows, strict=True)
    return pa.table({"user_id": pa.array(user, pa.int64()), "event_timestamp": pa.array(t, TS)})


def _one_view(tmp_path: Path, rows, ttl: timedelta | None = timedelta(days=7)) -> list[ViewSource]:
    path = tmp_path / "v.parquet"
    pq.write_table(_table(rows), path)
    return [_view("v", str(path), ttl)]


def test_backfill_after_t_is_used_by_feast_but_not_as_known(tmp_path: Path) -> None:
    views = _one_view(
        tmp_path,
        [
            (1, T0, T0, 1.0, 1),  # original row
            (1, T0, T0 + timedelta(days=3), 2.0, 2),  # backfill of the same event, 3 days later
            # a late row: happened after T0, landed two days later
            (2, T0, T0, 10.0, 10),
            (2, T0 + timedelta(hours=1), T0 + timedelta(days=2), 20.0, 20),
        ],
    )
    entities = _entities(
        [
            (1, T0 + timedelta(days=1)),  # backfill exists in the data but not yet created
            (1, T0 + timedelta(days=4)),  # backfill created by now
            (2, T0 + timedelta(days=1)),
            (2, T0 + timedelta(days=2)),  # exactly on the late row's created timestamp
        ]
    )
    known = point_in_time_join(entities, views, semantics="as_known")
    feast = point_in_time_join(entities, views, semantics="feast")
    assert known.column("v_row_version").to_pylist() == [1, 2, 10, 20]
    assert feast.column("v_row_version").to_pylist() == [2, 2, 20, 20]
    assert known.column("v_value").to_pylist() == [1.0, 2.0, 10.0, 20.0]
    assert feast.column("v_value").to_pylist() == [2.0, 2.0, 20.0, 20.0]
    # default semantics is as_known
    assert point_in_time_join(entities, views).equals(known)


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
def test_ttl_boundary_is_inclusive(semantics: str, tmp_path: Path) -> None:
    ttl = timedelta(days=1, hours=2, seconds=3)
    views = _one_view(tmp_path, [(1, T0, T0, 1.0, 1)], ttl=ttl)
    one_us = timedelta(microseconds=1)
    entities = _entities(
        [(1, T0 - one_us), (1, T0), (1, T0 + ttl), (1, T0 + ttl + one_us), (2, T0)]
    )
    result = point_in_time_join(entities, views, semantics=semantics)
    assert result.column("v_row_version").to_pylist() == [None, 1, 1, None, None]


def test_sub_second_ttl_boundary(tmp_path: Path) -> None:
    ttl = timedelta(seconds=10, microseconds=500_000)
    views = _one_view(tmp_path, [(1, T0, T0, 1.0, 1)], ttl=ttl)
    entities = _entities([(1, T0 + ttl), (1, T0 + timedelta(seconds=10, microseconds=200_000))])
    result = point_in_time_join(entities, views)
    assert result.column("v_row_version").to_pylist() == [1, 1]


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
def test_ttl_none_means_no_ttl(semantics: str, tmp_path: Path) -> None:
    views = _one_view(tmp_path, [(1, T0, T0, 1.0, 1)], ttl=None)
    entities = _entities([(1, T0 + timedelta(days=3650)), (1, T0 - timedelta(microseconds=1))])
    result = point_in_time_join(entities, views, semantics=semantics)
    assert result.column("v_value").to_pylist() == [1.0, None]


def test_empty_views_returns_entity_rows_unchanged() -> None:
    entities = _entities([(2, T0), (1, T0), (2, T0)]).append_column(
        "label", pa.array([1, 0, 1], pa.int64())
    )
    for semantics in ("as_known", "feast"):
        assert point_in_time_join(entities, [], semantics=semantics).equals(entities)


def test_feature_name_colliding_with_entity_column_raises(tmp_path: Path) -> None:
    views = _one_view(tmp_path, [(1, T0, T0, 1.0, 1)])
    entities = _entities([(1, T0)]).append_column("v_value", pa.array([0.0]))
    with pytest.raises(ValueError, match="v_value"):
        point_in_time_join(entities, views)


def test_invalid_semantics_raises(tmp_path: Path) -> None:
    views = _one_view(tmp_path, [(1, T0, T0, 1.0, 1)])
    with pytest.raises(ValueError, match="semantics"):
        point_in_time_join(_entities([(1, T0)]), views, semantics="latest")  # type: ignore[arg-type]


def test_naive_source_timestamps_are_utc_whatever_the_session_zone(tmp_path: Path) -> None:
    duckdb = pytest.importorskip("duckdb")
    naive = T0.replace(tzinfo=None)
    table = _table([(1, T0, T0, 1.0, 1)])
    table = table.set_column(1, "event_timestamp", pa.array([naive], pa.timestamp("us")))
    table = table.set_column(2, "created_timestamp", pa.array([naive], pa.timestamp("us")))
    pq.write_table(table, tmp_path / "v.parquet")
    views = [_view("v", str(tmp_path / "v.parquet"), timedelta(days=1))]
    con = duckdb.connect()
    con.execute("SET TimeZone = 'America/New_York'")
    entities = _entities([(1, T0 - timedelta(hours=1)), (1, T0 + timedelta(hours=2))])
    result = point_in_time_join(entities, views, connection=con)
    assert result.column("v_row_version").to_pylist() == [None, 1]


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
def test_null_created_timestamp_counts_as_created_at_event_time(
    semantics: str, tmp_path: Path
) -> None:
    table = _table(
        [
            (1, T0 - timedelta(hours=2), T0 - timedelta(hours=2), 1.0, 1),
            (1, T0 - timedelta(hours=1), T0, 2.0, 2),  # created is nulled below
        ]
    )
    table = table.set_column(2, "created_timestamp", pa.array([T0 - timedelta(hours=2), None], TS))
    pq.write_table(table, tmp_path / "v.parquet")
    views = [_view("v", str(tmp_path / "v.parquet"), timedelta(days=1))]
    result = point_in_time_join(_entities([(1, T0)]), views, semantics=semantics)
    assert result.column("v_row_version").to_pylist() == [2]


def test_same_feature_name_from_two_views_is_a_clear_error(tmp_path: Path) -> None:
    pq.write_table(_table([(1, T0, T0, 1.0, 1)]), tmp_path / "v.parquet")
    views = [
        _view("a", str(tmp_path / "v.parquet"), None),
        _view("a", str(tmp_path / "v.parquet"), None),
    ]
    with pytest.raises(ValueError, match="more than one view"):
        point_in_time_join(_entities([(1, T0)]), views)


def test_history_flags_say_which_rows_found_usable_history(tmp_path: Path) -> None:
    from portside.components.features.pit_join import history_flag

    # a real null value is still history; a row beyond the TTL is not
    views = _one_view(tmp_path, [(1, T0, T0, None, 1)], ttl=timedelta(days=1))
    entities = _entities([(1, T0), (1, T0 + timedelta(days=2)), (2, T0)])
    result = point_in_time_join(entities, views, flag_history=True)
    assert result.column(history_flag(views[0])).to_pylist() == [True, False, False]
    assert result.column("v_value").to_pylist() == [None, None, None]
    assert history_flag(views[0]) not in point_in_time_join(entities, views).column_names


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
def test_composite_join_key_matches_reference(semantics: str, tmp_path: Path) -> None:
    """A view keyed by two columns: both must match; string features keep their type."""
    rng = np.random.default_rng(11)
    rows = _feature_rows(rng, 150, 0)
    rows["shop_id"] = rng.integers(0, 3, len(rows))
    table = pa.table(
        {
            "user_id": pa.array(rows["user_id"].to_numpy(np.int64)),
            "shop_id": pa.array(rows["shop_id"].to_numpy(np.int64)),
            "event_timestamp": pa.array(rows["ts"].to_numpy(np.int64)).cast(TS),
            "created_timestamp": pa.array(rows["created"].to_numpy(np.int64)).cast(TS),
            "row_version": pa.array(rows["row_version"].to_numpy(np.int64)),
            "label": pa.array([f"v{v}" for v in rows["row_version"]]),
        }
    )
    pq.write_table(table, tmp_path / "v.parquet")
    view = ViewSource(
        name="v",
        path=str(tmp_path / "v.parquet"),
        join_keys=("user_id", "shop_id"),
        timestamp_field="event_timestamp",
        created_timestamp_field="created_timestamp",
        ttl=TTL_B,
        features=(("row_version", "v_row_version"), ("label", "v_label")),
    )
    entities = pd.DataFrame(
        {
            "user_id": rng.integers(0, N_USERS + 2, 300),
            "shop_id": rng.integers(0, 4, 300),
            "t": BASE_US + rng.integers(-DAY, 32 * DAY, 300),
        }
    )
    entity_table = pa.table(
        {
            "user_id": pa.array(entities["user_id"].to_numpy(np.int64)),
            "shop_id": pa.array(entities["shop_id"].to_numpy(np.int64)),
            "event_timestamp": pa.array(entities["t"].to_numpy(np.int64)).cast(TS),
        }
    )
    result = point_in_time_join(entity_table, [view], semantics=semantics)

    # reference: brute force over pairs matching on both keys
    left = entities.assign(rid=np.arange(len(entities)))
    pairs = left.merge(rows, on=["user_id", "shop_id"])
    usable = (pairs["ts"] <= pairs["t"]) & (pairs["ts"] >= pairs["t"] - _us(TTL_B))
    if semantics == "as_known":
        usable &= pairs["created"] <= pairs["t"]
    best = (
        pairs[usable]
        .sort_values(["rid", "ts", "created"])
        .drop_duplicates("rid", keep="last")
        .set_index("rid")
        .reindex(np.arange(len(entities)))
    )
    expected = _as_list(best["row_version"], int)
    assert result.column("v_row_version").to_pylist() == expected
    assert result.column("v_label").to_pylist() == [
        None if v is None else f"v{v}" for v in expected
    ]
    assert result.schema.field("v_label").type == pa.string()
    assert 0 < sum(v is not None for v in expected) < len(expected)


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
def test_timestamps_before_1970(semantics: str, tmp_path: Path) -> None:
    """Negative epoch values: the (event, created) ordering and the TTL still hold."""
    t0 = datetime(1960, 1, 1, tzinfo=timezone.utc)
    views = _one_view(
        tmp_path,
        [
            (1, t0, t0, 1.0, 1),
            (1, t0, t0 + timedelta(hours=5), 2.0, 2),  # backfill of the same event
            (1, t0 - timedelta(days=1), t0 + timedelta(hours=1), 3.0, 3),  # older event
        ],
        ttl=timedelta(days=2),
    )
    entities = _entities(
        [(1, t0 + timedelta(hours=2)), (1, t0 + timedelta(hours=6)), (1, t0 + timedelta(days=3))]
    )
    result = point_in_time_join(entities, views, semantics=semantics)
    expected = [1, 2, None] if semantics == "as_known" else [2, 2, None]
    assert result.column("v_row_version").to_pylist() == expected


@pytest.mark.parametrize("semantics", ["as_known", "feast"])
def test_rows_outside_the_entity_time_range_change_nothing(semantics: str, tmp_path: Path) -> None:
    """Rows after the last entity row and rows older than the TTL before the first (the join
    skips both) change no result."""
    ttl = timedelta(days=1)
    rows = [
        (1, T0 - timedelta(days=3), T0 - timedelta(days=3), 1.0, 1),  # stale for every row
        (1, T0 - timedelta(hours=1), T0 + timedelta(hours=1), 2.0, 2),  # lands after T0
        (1, T0 + timedelta(hours=3), T0 + timedelta(hours=3), 3.0, 3),  # after the last row
        (2, T0 - timedelta(days=2), T0 - timedelta(days=2), 4.0, 4),  # stale, backfilled ...
        (2, T0 - timedelta(days=2), T0 + timedelta(hours=1), 5.0, 5),  # ... still stale
        (3, T0 + timedelta(hours=2), T0 + timedelta(hours=2), 6.0, 6),  # at the last row's time
        (4, T0 - ttl, T0 - ttl, 7.0, 7),  # exactly the TTL before the first row
    ]
    views = _one_view(tmp_path, rows, ttl=ttl)
    later = T0 + timedelta(hours=2)
    entities = _entities([(1, T0), (1, later), (2, later), (3, later), (4, T0)])
    result = point_in_time_join(entities, views, semantics=semantics)
    expected = [None, 2, None, 6, 7] if semantics == "as_known" else [2, 2, None, 6, 7]
    assert result.column("v_row_version").to_pylist() == expected


def test_no_entity_rows_gives_typed_empty_feature_columns(tmp_path: Path) -> None:
    views = _one_view(tmp_path, [(1, T0, T0, 1.0, 1)])
    empty = _entities([(1, T0)]).slice(0, 0)
    result = point_in_time_join(empty, views, flag_history=True)
    assert result.num_rows == 0
    assert result.schema.field("v_value").type == pa.float64()
    assert result.schema.field("v_row_version").type == pa.int64()
