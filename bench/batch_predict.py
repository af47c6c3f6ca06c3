"""Benchmark `batch_predict`: batch scoring of entity rows, Portside's chunks vs the peer way.

A model is trained (1 epoch) and registered in an MLflow registry, then entity rows sampled
(seeded) from transactions.parquet are scored, side by side in one run:

- portside: `components.batch_predict.run.run(...)` with chunks of `CHUNK_ROWS` (100k);
- portside, one chunk: the same with `chunk_rows` = all rows (what the chunking saves);
- feast + one predict: the peer approach. One `get_historical_features(...)` call over the
  whole file on the repo's DuckDB offline store (`.to_df()`), one `ServingModel.predict` over
  the result, one Parquet write of keys, time, score and version.

Each case is its own process (`measure`); the timed call includes fetching the model version
from the registry and loading it. Peak RSS is the child's VmHWM (imports included). The
target: Portside's peak RSS at the largest size within `MAX_GROWTH` of its peak at the
smallest (memory bounded by the chunk, not the file).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from bench.common import (
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
    train_champion,
    warm_feast,
)
from bench.feature_retrieval import entity_rows

NAME = "batch_predict"
DATA = {"transactions": 1_000_000, "users": 10_000}
SIZES = (100_000, 1_000_000)
QUICK_DATA = {"transactions": 20_000, "users": 400}
QUICK_SIZES = (2_000, 10_000)
TRAIN_ROWS, QUICK_TRAIN_ROWS = 100_000, 10_000
CHUNK_ROWS, QUICK_CHUNK_ROWS = 100_000, 1_000
MODEL_NAME = "fraud_model"
OUTPUT = "fraud_probability"
MAX_GROWTH = 1.5  # portside's peak RSS, largest size / smallest size

PORTSIDE, ONE_CHUNK, PEER = "portside", "portside, one chunk", "feast + one predict"


def run(quick: bool = False) -> dict[str, Any]:
    sources, source_rows = dataset(**(QUICK_DATA if quick else DATA))
    print(
        f"sources: {source_rows['transactions']:,} transactions, "
        f"user_daily_aggregates {source_rows['user_daily_aggregates']:,} rows",
        flush=True,
    )
    work = WORK / NAME
    shutil.rmtree(work, ignore_errors=True)
    repo = feature_workspace(work / "workspace", sources)  # the repo's own (DuckDB) store
    tracking_uri = work / "mlflow.db"
    print("training and registering a model ...", flush=True)
    training_rows = entity_rows(sources, QUICK_TRAIN_ROWS if quick else TRAIN_ROWS)
    train_champion(repo, training_rows, work / "model", tracking_uri, MODEL_NAME, OUTPUT, 1)
    chunk_rows = QUICK_CHUNK_ROWS if quick else CHUNK_ROWS
    cases = []
    for n in QUICK_SIZES if quick else SIZES:
        rows = entity_rows(sources, n)
        for engine in (PORTSIDE, ONE_CHUNK, PEER):
            case = {"engine": engine, "entity_rows": n, "path": str(rows), "repo": str(repo)}
            case |= {"tracking_uri": str(tracking_uri), "chunk_rows": chunk_rows}
            cases.append(_measure(case, work))
    _add_ratios(cases)
    text = _table(cases, chunk_rows)
    print(text, flush=True)
    return {
        "data": {**(QUICK_DATA if quick else DATA), "rows": source_rows},
        "chunk_rows": chunk_rows,
        "cases": cases,
        "tables": [text],
        "failed": sum("error" in c for c in cases),
    }


def _measure(case: dict[str, Any], work: Path) -> dict[str, Any]:
    engine = {PORTSIDE: "portside", ONE_CHUNK: "one_chunk", PEER: "feast"}[case["engine"]]
    label = f"{NAME}-{engine}-{case['entity_rows']}"
    out = work / "out" / label
    result = measure(f"bench.{NAME}", label, {**case, "out": str(out)})
    shutil.rmtree(out, ignore_errors=True)
    return result


def _add_ratios(cases: list[dict[str, Any]]) -> None:
    """Time and memory against the peer at the same size; Portside's memory growth."""
    peers = {c["entity_rows"]: c for c in cases if c["engine"] == PEER and "error" not in c}
    for case in cases:
        peer = peers.get(case["entity_rows"])
        if "error" in case or peer is None or case["engine"] == PEER:
            continue
        case["speedup_vs_peer"] = round(peer["wall_s"] / case["wall_s"], 2)
        case["memory_vs_peer"] = round(case["peak_rss_gb"] / peer["peak_rss_gb"], 3)
    for engine in (PORTSIDE, ONE_CHUNK, PEER):
        done = [c for c in cases if c["engine"] == engine and "error" not in c]
        if len(done) >= 2:
            smallest, largest = done[0], done[-1]
            growth = round(largest["peak_rss_gb"] / smallest["peak_rss_gb"], 2)
            largest["rss_growth"] = growth
            if engine == PORTSIDE:
                verdict = "pass" if growth <= MAX_GROWTH else f"MISS: {growth}x > {MAX_GROWTH}x"
                largest["targets"] = verdict


def _table(cases: list[dict[str, Any]], chunk_rows: int) -> str:
    headers = [
        "engine",
        "entity rows",
        "wall s",
        "peak RSS GB",
        "rows written",
        "speed-up vs peer",
        "memory vs peer",
        "RSS growth",
        "targets",
        "other CPU",
    ]
    rows = []
    for c in cases:
        if "error" in c:
            rows.append([c["engine"], count(c["entity_rows"]), "error", *["-"] * 7])
            continue
        rows.append(
            [
                c["engine"],
                count(c["entity_rows"]),
                seconds(c["wall_s"]),
                gigabytes(c["peak_rss_gb"]),
                count(c["rows_written"]),
                ratio(c.get("speedup_vs_peer")),
                fraction(c.get("memory_vs_peer")),
                ratio(c.get("rss_growth")),
                c.get("targets", "-"),
                fraction(c["other_processes_cpu_share"]),
            ]
        )
    return table(
        f"{NAME}: score entity rows with {MODEL_NAME} v1 (portside: chunks of {chunk_rows:,}; "
        f"target: portside's peak RSS grows <= {MAX_GROWTH}x from the smallest to the largest "
        "size; RSS growth: peak RSS at this size / at the smallest; other CPU: share of the "
        "CPUs used by other processes during the case)",
        headers,
        rows,
    )


# --- child side ----------------------------------------------------------------------------


def run_case(case: dict[str, Any]) -> dict[str, Any]:
    import pyarrow.parquet as pq
    import tensorflow  # noqa: F401  (setup, as Feast's: both engines score through TF)

    from portside.components.batch_predict.run import run as batch_predict
    from portside.components.common.artifacts import PREDICTIONS_FILE

    warm_feast(case["repo"])
    out = Path(case["out"])
    if case["engine"] == PEER:
        _, timing = timed(lambda: _peer(case, out))
        return {**timing, "rows_written": pq.ParquetFile(out / PREDICTIONS_FILE).metadata.num_rows}
    chunk_rows = case["chunk_rows"] if case["engine"] == PORTSIDE else case["entity_rows"]
    result, timing = timed(
        lambda: batch_predict(
            case["path"],
            str(out),
            MODEL_NAME,
            tracking_uri=case["tracking_uri"],
            feature_repo=case["repo"],
            chunk_rows=chunk_rows,
        )
    )
    written = pq.ParquetFile(out / PREDICTIONS_FILE).metadata.num_rows
    return {**timing, "rows_written": written, "chunks": result.chunks}


def _peer(case: dict[str, Any], out: Path) -> None:
    """One get_historical_features over the whole file, one predict, one write."""
    import tempfile

    import pandas as pd
    from feast import FeatureStore

    from portside.components.common.artifacts import PREDICTIONS_FILE
    from portside.components.common.model_io import ServingModel
    from portside.components.push.registry import Registry

    registry = Registry(case["tracking_uri"], MODEL_NAME)
    champion = registry.champion()
    with tempfile.TemporaryDirectory() as scratch:
        model = ServingModel(registry.files(champion, scratch))
    store = FeatureStore(repo_path=case["repo"])
    entity_df = pd.read_parquet(case["path"]).drop(columns=[LABEL])
    service = store.get_feature_service(model.spec.feature_service)
    frame = store.get_historical_features(entity_df=entity_df, features=service).to_df()
    keys = [*model.spec.entity_keys, model.spec.timestamp]
    scored = frame[keys].assign(
        **{model.spec.output: model.predict(frame), "model_version": str(champion.version)}
    )
    out.mkdir(parents=True)
    scored.to_parquet(out / PREDICTIONS_FILE, index=False)


if __name__ == "__main__":
    from bench.common import case_main

    case_main(run_case)
