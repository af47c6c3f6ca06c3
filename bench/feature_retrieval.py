"""Benchmark `feature_retrieval`: training-set build, Portside vs Feast's offline stores.

Entity rows are sampled (seeded) from transactions.parquet and joined against the
`fraud_model_v1` service (user_profile, user_daily_aggregates of ~3M rows, an on-demand view):

- portside: `components.features.run.run(...)` (default `as_known` semantics), the call timed;
- feast file (dask): `get_historical_features(...).to_df()` on a repo copy whose
  feature_store.yaml has `offline_store: {type: file}`, timed including `to_df()`;
- feast duckdb: the same call on the repo's default yaml (DuckDB offline store);
- floor: a raw DuckDB ASOF join, the least work a training set needs: read the entity rows'
  Parquet file and ASOF LEFT JOIN each view's Parquet source on its keys and
  `entity time >= event time`, to an Arrow table. No TTL, no created timestamp, no on-demand
  view, no output file: a lower bound, not a correct training set.

Cases up to 100k entity rows run three times, engines interleaved, and report the median wall
(with the range): at these sizes one process's time varies by ~0.1-0.2 s on both sides.

Then 10M entity rows (sampled with replacement from the same transactions), without the file
store (it is stopped at the memory cap already at 1M). Feast returns rows in another order, so
only rows are counted.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.common import (
    FEATURE_SERVICE,
    LABEL,
    WORK,
    count,
    dataset,
    feature_workspace,
    fraction,
    gigabytes,
    measure,
    ratio,
    seconds,
    table,
    timed,
    warm_feast,
)

NAME = "feature_retrieval"
# ~3.06M user_daily_aggregates rows (checked: the view must have 2.9-3.3M rows).
DATA = {"transactions": 3_000_000, "users": 37_000}
SIZES = (10_000, 100_000, 1_000_000)
BIG = 10_000_000
QUICK_DATA = {"transactions": 20_000, "users": 400}
QUICK_SIZES = (1_000, 5_000)
QUICK_BIG = 30_000
SEED = 0

PORTSIDE, FILE, DUCKDB = "portside", "feast file (dask)", "feast duckdb"
FLOOR = "raw duckdb asof (floor)"
MIN_SPEEDUP, MAX_MEMORY_FRACTION = 15.0, 0.25  # vs the file store
BIG_MAX_S, BIG_MAX_GB = 20.0, 8.0
# vs Feast's DuckDB store: faster at every size, at least this much from 1M rows on
MIN_SPEEDUP_VS_DUCKDB, LARGE = 2.0, 1_000_000
MAX_VS_FLOOR, FLOOR_AT = 1.5, 1_000_000  # Portside's time / the floor's, at this size
# Sub-second cases vary by ~0.1-0.2 s from process to process here, on both sides: sizes up to
# this many entity rows run ROUNDS times (engines interleaved) and report the median wall.
REPEAT_UP_TO, ROUNDS = 100_000, 3


def run(quick: bool = False) -> dict[str, Any]:
    sources, source_rows = dataset(**(QUICK_DATA if quick else DATA))
    print(
        f"sources: {source_rows['transactions']:,} transactions, "
        f"user_daily_aggregates {source_rows['user_daily_aggregates']:,} rows, "
        f"user_profiles {source_rows['user_profiles']:,} rows",
        flush=True,
    )
    work = WORK / NAME
    shutil.rmtree(work, ignore_errors=True)
    repos = {
        DUCKDB: feature_workspace(work / "duckdb", sources),  # the repo's own yaml
        FILE: feature_workspace(work / "file", sources, {"offline_store": {"type": "file"}}),
    }
    # Portside and the floor read only the registry and the Parquet sources
    repos[PORTSIDE] = repos[FLOOR] = repos[DUCKDB]

    cases = []
    sizes = QUICK_SIZES if quick else SIZES
    for n in sizes:
        rows_path = entity_rows(sources, n)
        engines = (PORTSIDE, FILE, DUCKDB, FLOOR)
        rounds = ROUNDS if n <= REPEAT_UP_TO else 1
        runs: dict[str, list[dict[str, Any]]] = {engine: [] for engine in engines}
        for round_number in range(rounds):
            for engine in engines:
                suffix = f"-r{round_number + 1}" if rounds > 1 else ""
                runs[engine].append(_measure(engine, n, rows_path, repos[engine], work, suffix))
        cases.extend(median_case(runs[engine]) for engine in engines)
    big = QUICK_BIG if quick else BIG
    for engine in (PORTSIDE, DUCKDB, FLOOR):
        cases.append(_measure(engine, big, entity_rows(sources, big), repos[engine], work))

    _add_ratios(cases)
    text = _table(cases, big)
    print(text, flush=True)
    return {
        "data": {**(QUICK_DATA if quick else DATA), "rows": source_rows},
        "entity_rows_seed": SEED,
        "cases": cases,
        "tables": [text],
        # A Feast case stopped at the memory cap is a result (reported with bounds), not a failure.
        "failed": sum(
            "error" in c and (c["engine"] == PORTSIDE or "killed" not in c) for c in cases
        ),
    }


def entity_rows(sources: Path, n: int) -> Path:
    """n transactions sampled with a fixed seed (with replacement if n exceeds them), cached."""
    path = sources.parent / f"entity_rows_{n}_seed{SEED}.parquet"
    if not path.is_file():
        import numpy as np
        import pyarrow.parquet as pq

        transactions = pq.read_table(sources / "transactions.parquet")
        rng = np.random.default_rng(SEED)
        index = rng.choice(transactions.num_rows, n, replace=n > transactions.num_rows)
        partial = path.with_suffix(".partial")
        pq.write_table(transactions.take(index), partial)
        partial.rename(path)
    return path


def _measure(
    engine: str, n: int, rows_path: Path, repo: Path, work: Path, suffix: str = ""
) -> dict[str, Any]:
    label = f"{NAME}-{engine.split()[-1].strip('()')}-{n}{suffix}"
    out = work / "out" / label
    case = {"engine": engine, "entity_rows": n, "path": str(rows_path), "repo": str(repo)}
    result = measure(f"bench.{NAME}", label, {**case, "out": str(out)})
    shutil.rmtree(out, ignore_errors=True)  # a 10M-row training set is large
    return result


def median_case(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One case from repeated runs: the run with the median wall time, with every run's wall
    (`walls_s`) and the highest peak RSS of them. A failed run makes the case failed."""
    failed = [r for r in runs if "error" in r]
    if failed or len(runs) == 1:
        return failed[0] if failed else runs[0]
    ordered = sorted(runs, key=lambda r: r["wall_s"])
    case = dict(ordered[len(ordered) // 2])
    case["walls_s"] = [r["wall_s"] for r in runs]
    case["peak_rss_gb"] = max(r["peak_rss_gb"] for r in runs)
    return case


def _add_ratios(cases: list[dict[str, Any]]) -> None:
    """Speed-up and memory fraction vs the file store, speed-up vs the DuckDB store and time
    relative to the floor, at the same size; target verdicts.

    A file-store case killed at the memory cap still bounds the ratios: its timed call had
    run `timed_call_s_at_kill` seconds and reached `polled_peak_rss_gb`, so the speed-up is
    at least, and the memory fraction at most, what those give (marked `vs_file_bound`).
    """
    references = {}
    for c in cases:
        if c["engine"] != FILE:
            continue
        if "error" not in c:
            references[c["entity_rows"]] = (c["wall_s"], c["peak_rss_gb"], False)
        elif "timed_call_s_at_kill" in c:
            references[c["entity_rows"]] = (
                c["timed_call_s_at_kill"],
                c["polled_peak_rss_gb"],
                True,
            )
    walls = {
        (c["engine"], c["entity_rows"]): c["wall_s"]
        for c in cases
        if "error" not in c and c["engine"] in (DUCKDB, FLOOR)
    }
    for case in cases:
        if "error" in case:
            continue
        n = case["entity_rows"]
        case["rows_dropped"] = n - case["rows_returned"]
        reference = references.get(n)
        if reference is not None and case["engine"] not in (FILE, FLOOR):
            wall, peak, bound = reference
            case["speedup_vs_file"] = round(wall / case["wall_s"], 2)
            case["memory_vs_file"] = round(case["peak_rss_gb"] / peak, 3)
            case["vs_file_bound"] = bound
        if case["engine"] == PORTSIDE:
            if (DUCKDB, n) in walls:
                case["speedup_vs_duckdb"] = round(walls[DUCKDB, n] / case["wall_s"], 2)
            if (FLOOR, n) in walls:
                case["vs_floor"] = round(case["wall_s"] / walls[FLOOR, n], 2)
            case["targets"] = _verdict(case, reference is not None)


def _verdict(case: dict[str, Any], compared: bool) -> str:
    """ "pass", or what was missed; a miss against a file store stopped at the memory cap is
    "not shown" (only a bound is known), every other miss is a MISS."""
    misses, unknown = [], []
    if case["rows_dropped"]:
        misses.append(f"{case['rows_dropped']:,} rows dropped")
    versus_duckdb = case.get("speedup_vs_duckdb")
    if versus_duckdb is not None:
        if case["entity_rows"] >= LARGE and versus_duckdb < MIN_SPEEDUP_VS_DUCKDB:
            misses.append(f"vs duckdb {versus_duckdb:.2f}x < {MIN_SPEEDUP_VS_DUCKDB:.0f}x")
        elif versus_duckdb <= 1.0:
            misses.append(f"vs duckdb {versus_duckdb:.2f}x, not faster")
    if case["entity_rows"] == FLOOR_AT and case.get("vs_floor", 0.0) > MAX_VS_FLOOR:
        misses.append(f"{case['vs_floor']:.2f}x the floor > {MAX_VS_FLOOR}x")
    if compared:
        speedup, memory = case["speedup_vs_file"], case["memory_vs_file"]
        file_misses = unknown if case["vs_file_bound"] else misses
        if speedup < MIN_SPEEDUP:
            at_least = "at least " if case["vs_file_bound"] else ""
            file_misses.append(f"vs file {at_least}{speedup:.1f}x < {MIN_SPEEDUP:.0f}x")
        if memory > MAX_MEMORY_FRACTION:
            file_misses.append(f"memory {memory:.0%} > {MAX_MEMORY_FRACTION:.0%}")
    else:
        if case["wall_s"] > BIG_MAX_S:
            misses.append(f"{case['wall_s']:.1f} s > {BIG_MAX_S:.0f} s")
        if case["peak_rss_gb"] > BIG_MAX_GB:
            misses.append(f"{case['peak_rss_gb']:.2f} GB > {BIG_MAX_GB:.0f} GB")
    verdict = []
    if misses:
        verdict.append("MISS: " + "; ".join(misses))
    if unknown:
        verdict.append("not shown: " + "; ".join(unknown))
    return " / ".join(verdict) or "pass"


def _wall(case: dict[str, Any]) -> str:
    walls = case.get("walls_s")
    if not walls:
        return seconds(case["wall_s"])
    return f"{seconds(case['wall_s'])} ({seconds(min(walls))}-{seconds(max(walls))})"


def _table(cases: list[dict[str, Any]], big: int) -> str:
    headers = [
        "engine",
        "entity rows",
        "wall s (median; range)",
        "peak RSS GB",
        "rows returned",
        "rows dropped",
        "speed-up vs file",
        "memory vs file",
        "speed-up vs duckdb",
        "x floor",
        "targets",
        "other CPU",
    ]
    rows = []
    for c in cases:
        if "error" in c:
            killed = "timed_call_s_at_kill" in c
            rows.append(
                [
                    c["engine"],
                    count(c["entity_rows"]),
                    f"> {c['timed_call_s_at_kill']:.1f}" if killed else "error",
                    f"> {c['polled_peak_rss_gb']:.2f}" if killed else "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "-",
                    "killed at the memory cap" if killed else "failed: see log",
                    "-",
                ]
            )
            continue
        bound = c.get("vs_file_bound")
        rows.append(
            [
                c["engine"],
                count(c["entity_rows"]),
                _wall(c),
                gigabytes(c["peak_rss_gb"]),
                count(c["rows_returned"]),
                count(c["rows_dropped"]),
                ("> " if bound else "") + ratio(c.get("speedup_vs_file")),
                ("< " if bound else "") + fraction(c.get("memory_vs_file")),
                ratio(c.get("speedup_vs_duckdb")),
                "-" if c.get("vs_floor") is None else f"{c['vs_floor']:.2f}",
                c.get("targets", "-"),
                fraction(c["other_processes_cpu_share"]),
            ]
        )
    return table(
        f"{NAME}: training set for fraud_model_v1 "
        f"(targets: >= {MIN_SPEEDUP:.0f}x faster than the file store, <= "
        f"{MAX_MEMORY_FRACTION:.0%} of its memory, 0 rows dropped; faster than feast duckdb, "
        f">= {MIN_SPEEDUP_VS_DUCKDB:.0f}x from {LARGE:,} rows; <= {MAX_VS_FLOOR}x the floor at "
        f"{FLOOR_AT:,}; {big:,} rows within {BIG_MAX_S:.0f} s and {BIG_MAX_GB:.0f} GB; x floor: "
        "wall / the raw ASOF join's; other CPU: share of the CPUs used by other processes during "
        "the case)",
        headers,
        rows,
    )


# --- child side ----------------------------------------------------------------------------


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    if case["engine"] == PORTSIDE:
        import pyarrow.parquet as pq

        from portside.components.features.run import TRAINING_SET_FILE
        from portside.components.features.run import run as build_training_set

        warm_feast(case["repo"])
        manifest, timing = timed(
            lambda: build_training_set(
                case["path"],
                case["out"],
                FEATURE_SERVICE,
                feature_repo=case["repo"],
                label_column=LABEL,
            )
        )
        written = pq.ParquetFile(Path(case["out"]) / TRAINING_SET_FILE).metadata.num_rows
        return {**timing, "rows_in": manifest.rows_in, "rows_returned": written}

    if case["engine"] == FLOOR:
        return _floor_case(case)

    import pandas as pd
    from feast import FeatureStore

    entity_df = pd.read_parquet(case["path"])
    store = FeatureStore(repo_path=case["repo"])

    def retrieve() -> pd.DataFrame:
        service = store.get_feature_service(FEATURE_SERVICE)
        return store.get_historical_features(entity_df=entity_df, features=service).to_df()

    frame, timing = timed(retrieve)
    return {**timing, "rows_in": len(entity_df), "rows_returned": len(frame)}


def _floor_case(case: dict[str, Any]) -> dict[str, Any]:
    """The raw ASOF join (see the module docstring), views and columns from the registry."""
    import duckdb

    from portside.components.features.feast_repo import open_store, resolve_service

    warm_feast(case["repo"])
    views = resolve_service(open_store(case["repo"]), FEATURE_SERVICE).views
    con = duckdb.connect()
    table, timing = timed(lambda: con.sql(floor_query(case["path"], views)).to_arrow_table())
    return {**timing, "rows_in": table.num_rows, "rows_returned": table.num_rows}


def floor_query(entity_path: str, views: list[Any]) -> str:
    """SELECT every entity column and each view's features, one plain ASOF LEFT JOIN per view."""

    def literal(path: str) -> str:
        return "'" + path.replace("'", "''") + "'"

    columns, joins = ["e.*"], []
    for i, view in enumerate(views):
        alias = f"v{i}"
        columns += [f'{alias}."{src}" AS "{out}"' for src, out in view.features]
        keys = " AND ".join(f'e."{k}" = {alias}."{k}"' for k in view.join_keys)
        joins.append(
            f"ASOF LEFT JOIN read_parquet({literal(view.path)}) {alias} ON {keys} "
            f'AND e."event_timestamp" >= {alias}."{view.timestamp_field}"'
        )
    return f"SELECT {', '.join(columns)} FROM read_parquet({literal(entity_path)}) e " + " ".join(
        joins
    )


if __name__ == "__main__":
    from bench.common import case_main

    case_main(run_case)
