"""Diagnostic `phases`: where the time of the benchmarked calls goes, phase by phase.

Not a comparison: it explains the numbers of `feature_retrieval` and `materialize`. Each case
runs the same call as the benchmark (Portside's `run()` at every size; `materialize` of both
engines on both online stores) in its own process, with the functions it calls wrapped in
timers for that process only (nothing is changed on disk). A phase that runs many times (one
call per batch) is summed. "other" is the timed call minus its top-level phases; "of which"
rows are inside the phase above them. "GB" is the process's peak RSS (VmHWM) after the
phase's last call.
"""

from __future__ import annotations

import functools
import importlib
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

from bench import common, feature_retrieval, materialize
from bench.common import (
    WORK,
    count,
    dataset,
    feature_workspace,
    measure,
    peak_rss_gb,
    table,
    timed,
    warm_feast,
)

NAME = "phases"
OTHER, TOTAL = "other", "total: the timed call"
STORES = "feast.infra.online_stores"
# (owner as "module" or "module:Class", attribute, phase); "of which" phases are nested.
FEATURES = [
    ("portside.components.features.feast_repo", "open_store", "open store (registry)"),
    ("portside.components.features.feast_repo", "resolve_service", "resolve the feature service"),
    ("portside.components.features.run", "load_entity_rows", "read + check entity rows"),
    ("portside.components.features.run", "build_training_set", "join + on-demand views"),
    ("portside.components.features.pit_join", "point_in_time_join", "of which point-in-time join"),
    ("portside.components.features.run", "apply_on_demand", "of which on-demand views"),
    ("pyarrow.parquet", "write_table", "write training_set.parquet"),
    ("portside.components.features.run", "_manifest", "manifest"),
    ("portside.components.features.run", "content_fingerprint", "of which content fingerprint"),
    ("portside.components.features.run", "_files_read", "hash the definitions and sources read"),
]
WRITES = [
    (f"{STORES}.sqlite:SqliteOnlineStore", "online_write_batch", "online_write_batch"),
    (f"{STORES}.redis:RedisOnlineStore", "online_write_batch", "online_write_batch"),
    ("feast.infra.registry.registry:Registry", "apply_materialization", "record the interval"),
]
WRITERS = "portside.components.features.online_write"
MATERIALIZE = {
    materialize.PORTSIDE: [
        ("portside.components.features.feast_repo", "open_store", "open store (registry)"),
        # Portside's writers encode column-wise (online_values) and write in bulk; the DuckDB
        # query runs while the first batch is pulled, so it is in "other".
        (f"{WRITERS}:SqliteWriter", "__call__", "bulk write: sqlite"),
        (f"{WRITERS}:RedisWriter", "__call__", "bulk write: redis"),
        (WRITERS, "encode_rows", "of which encode values (column-wise)"),
        (f"{WRITERS}:SqliteWriter", "_stored_event_times", "of which read stored event times"),
        (f"{WRITERS}:RedisWriter", "_stored_nanos", "of which read stored event times"),
        *WRITES,
    ],
    materialize.FEAST: [
        ("feast.infra.compute_engines.local.nodes", "_convert_arrow_to_proto", "arrow -> protos"),
        *WRITES,
    ],
}


def run(quick: bool = False) -> dict[str, Any]:
    work = WORK / NAME
    shutil.rmtree(work, ignore_errors=True)
    module = f"bench.{NAME}"

    sources, _ = dataset(**(feature_retrieval.QUICK_DATA if quick else feature_retrieval.DATA))
    repo = feature_workspace(work / "features", sources)
    sizes = feature_retrieval.QUICK_SIZES if quick else feature_retrieval.SIZES
    big = feature_retrieval.QUICK_BIG if quick else feature_retrieval.BIG
    features_cases = []
    for n in (*sizes, big):
        out = work / "out" / str(n)
        case = {"kind": "features", "engine": "portside", "entity_rows": n, "repo": str(repo)}
        case |= {"path": str(feature_retrieval.entity_rows(sources, n)), "out": str(out)}
        features_cases.append(measure(module, f"{NAME}-features-{n}", case))
        shutil.rmtree(out, ignore_errors=True)

    sources, _ = dataset(**(materialize.QUICK_DATA if quick else materialize.DATA))
    materialize_cases = []
    for online in ("sqlite", "redis"):
        for engine in (materialize.FEAST, materialize.PORTSIDE):
            config = materialize._store_config(online, engine, uuid.uuid4().hex[:8])
            repo = feature_workspace(work / f"{online}-{engine}", sources, config)
            case = {"kind": "materialize", "engine": engine, "online_store": online}
            try:
                case["repo"] = str(repo)
                materialize_cases.append(measure(module, f"{NAME}-{online}-{engine}", case))
            finally:
                if online == "redis":
                    materialize._teardown([repo])

    tables = [
        _table(
            "Portside features run() by entity rows",
            features_cases,
            lambda c: count(c["entity_rows"]),
            FEATURES,
        ),
        _table(
            "materialize by engine and online store",
            materialize_cases,
            lambda c: f"{c['engine']} {c['online_store']}",
            [spec for specs in MATERIALIZE.values() for spec in specs],
        ),
    ]
    for text in tables:
        print(text, flush=True)
    cases = features_cases + materialize_cases
    return {"cases": cases, "tables": tables, "failed": sum("error" in c for c in cases)}


def _table(title: str, cases: list[dict[str, Any]], label, specs) -> str:
    done = [c for c in cases if "error" not in c]
    names = list(dict.fromkeys(name for _, _, name in specs))
    names = [n for n in names if any(n in c["phases"] for c in done)] + [OTHER, TOTAL]
    headers = ["phase"] + [h for c in done for h in (f"{label(c)} s", "GB")]
    rows = []
    for name in names:
        row = ["  " + name if name.startswith("of which") else name]
        for c in done:
            if name == TOTAL:
                row += [f"{c['wall_s']:.2f}", f"{c['peak_rss_gb']:.2f}"]
            elif name in c["phases"]:
                peak = c["phase_peaks"].get(name)
                row += [f"{c['phases'][name]:.2f}", "-" if peak is None else f"{peak:.2f}"]
            else:
                row += ["-", "-"]
        rows.append(row)
    return table(f"{NAME}: {title}", headers, rows)


# --- child side ----------------------------------------------------------------------------


class Phases:
    """Timers wrapped around functions for the life of this process."""

    def __init__(self, specs: list[tuple[str, str, str]]) -> None:
        self.seconds: dict[str, float] = {}
        self.peaks: dict[str, float] = {}
        for owner, attribute, name in specs:
            module, _, cls = owner.partition(":")
            target = importlib.import_module(module)
            if cls:
                target = getattr(target, cls)
            setattr(target, attribute, self._timer(getattr(target, attribute), name))

    def _timer(self, function, name: str):
        @functools.wraps(function)
        def timed_function(*args, **kwargs):
            started = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - started
                self.peaks[name] = peak_rss_gb()

        return timed_function

    def result(self, timing: dict[str, float]) -> dict[str, Any]:
        phases = {name: round(s, 3) for name, s in self.seconds.items()}
        top_level = sum(s for name, s in phases.items() if not name.startswith("of which"))
        phases[OTHER] = round(timing["wall_s"] - top_level, 3)
        return {**timing, "phases": phases, "phase_peaks": self.peaks}


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    warm_feast(case["repo"])  # setup, as in the benchmarks
    if case["kind"] == "features":
        from portside.components.features import run as features

        phases = Phases(FEATURES)
        _, timing = timed(
            lambda: features.run(
                case["path"],
                case["out"],
                common.FEATURE_SERVICE,
                feature_repo=case["repo"],
                label_column=common.LABEL,
            )
        )
        return phases.result(timing)

    start, end = materialize.START, materialize.END
    phases = Phases(MATERIALIZE[case["engine"]])
    if case["engine"] == materialize.PORTSIDE:
        from portside.components.features.materialize import materialize as portside_materialize

        _, timing = timed(lambda: portside_materialize(case["repo"], start, end, progress=False))
    else:
        from feast import FeatureStore

        store = FeatureStore(repo_path=str(Path(case["repo"])))
        _, timing = timed(lambda: store.materialize(start_date=start, end_date=end))
    return phases.result(timing)


if __name__ == "__main__":
    from bench.common import case_main

    case_main(run_case)
