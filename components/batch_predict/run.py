"""The `batch_predict` component: scores for a Parquet file of entity rows, chunk by chunk.

Each chunk goes through the features component's own steps (`prepare_entity_rows`,
`join_features`), so a row's features are exactly the training set's for the same row, then
through the model's serving signature (`ServingModel`); it is appended to the output with a
ParquetWriter. Only one chunk (and one Parquet row group of the input) is in memory at a time.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from portside.components.common.artifacts import BATCH_METRICS_FILE, PREDICTIONS_FILE
from portside.components.errors import ConfigurationError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from portside.components.common.model_io import FeatureSpec, ServingModel
    from portside.components.features.feast_repo import ResolvedService

MODEL_VERSION_COLUMN = "model_version"


@dataclass
class BatchPredictions:
    model_name: str
    model_version: str
    model_content_hash: str | None
    registry: dict[str, str]
    feature_service: str
    feature_service_hash: str
    point_in_time: str
    engine: str
    output: str  # the score column, named by the model's serving output
    columns: list[str]  # of predictions.parquet, in order
    rows: int
    chunks: int
    chunk_rows: int
    rows_without_history: dict[str, int]
    score: dict[str, float | None]  # mean, min, max over the scored rows
    seconds: float


@dataclass
class _Totals:
    """What the chunks add up to."""

    rows: int = 0
    chunks: int = 0
    total: float = 0.0
    low: float = math.inf
    high: float = -math.inf

    def add(self, scores: np.ndarray) -> None:
        self.rows, self.chunks = self.rows + len(scores), self.chunks + 1
        if len(scores):
            self.total += float(scores.sum(dtype="float64"))
            self.low = min(self.low, float(scores.min()))
            self.high = max(self.high, float(scores.max()))

    def summary(self) -> dict[str, float | None]:
        if not self.rows:
            return {"mean": None, "min": None, "max": None}
        return {"mean": self.total / self.rows, "min": self.low, "max": self.high}


def run(
    entity_rows: str,
    predictions: str,
    model_name: str,
    model_version: str = "champion",
    registry: str = "mlflow",
    tracking_uri: str = "",
    vertex_project: str = "",
    vertex_location: str = "us-central1",
    vertex_api_endpoint: str = "",
    feature_repo: str = "feature_repo",
    feature_service: str = "",
    event_timestamp_column: str = "",
    point_in_time: str = "as_known",
    full_feature_names: bool = False,
    engine: str = "auto",
    chunk_rows: int = 100_000,
    keep_columns: str = "",
) -> BatchPredictions:
    """Score every entity row with `model_name` at `model_version` (a number or "champion");
    write `predictions.parquet` and `metrics.json` into `predictions`. The feature service and
    timestamp column default to the model's own (its feature_spec.json)."""
    from portside.components.features.feast_repo import open_store, resolve_service
    from portside.components.features.run import choose_engine
    from portside.components.push.champion import identity, open_registry

    started = time.perf_counter()
    if chunk_rows < 1:
        raise ConfigurationError(f"--chunk-rows must be >= 1, got {chunk_rows}")
    source = open_registry(
        registry, model_name, tracking_uri, vertex_project, vertex_location, vertex_api_endpoint
    )
    version, digest, model = _load_model(source, model_version)
    spec = model.spec
    service_name = feature_service or spec.feature_service
    if not service_name:
        raise ConfigurationError(
            f"model {model_name!r} v{version} names no feature service; pass --feature-service"
        )
    timestamp = event_timestamp_column or spec.timestamp
    store = open_store(feature_repo)
    service = resolve_service(store, service_name, full_feature_names)
    _check_model_inputs(spec, service, model_name, version)
    engine = choose_engine(engine, service, point_in_time)
    kept = [c.strip() for c in keep_columns.split(",") if c.strip()]
    path = Path(entity_rows)
    rows = _open_entity_rows(path, service, timestamp, kept)

    out = Path(predictions)
    out.mkdir(parents=True, exist_ok=True)
    columns = _output_columns(service, timestamp, kept, spec.output)
    connection = _connection(engine, chunk_rows)
    scorer = _Scorer(
        store, service, engine, model, timestamp, point_in_time, version, columns, connection
    )
    try:
        totals, without_history = _score_chunks(
            rows, path, scorer, chunk_rows, out / PREDICTIONS_FILE
        )
    finally:
        if connection is not None:
            connection.close()
    result = BatchPredictions(
        model_name=model_name,
        model_version=version,
        model_content_hash=digest,
        registry=identity(source),
        feature_service=service.name,
        feature_service_hash=service.definition_hash,
        point_in_time=point_in_time,
        engine=engine,
        output=spec.output,
        columns=columns,
        rows=totals.rows,
        chunks=totals.chunks,
        chunk_rows=chunk_rows,
        rows_without_history=without_history,
        score=totals.summary(),
        seconds=round(time.perf_counter() - started, 3),
    )
    written = {k: v for k, v in asdict(result).items() if k != "seconds"}  # content, not timing
    (out / BATCH_METRICS_FILE).write_text(json.dumps(written, indent=2))
    return result


def _load_model(registry: object, model_version: str) -> tuple[str, str | None, ServingModel]:
    """The version's number, content hash and loaded model (loaded, its files can go)."""
    from portside.components.common.model_io import ServingModel
    from portside.components.push.champion import resolve_version

    ref = resolve_version(registry, model_version)
    with tempfile.TemporaryDirectory(prefix="portside-batch-model-") as scratch:
        return ref.version, ref.content_hash, ServingModel(registry.champion_files(ref, scratch))


def _connection(engine: str, chunk_rows: int) -> object:
    """One DuckDB connection for every chunk, sized for a chunk's join."""
    from portside.components.features.pit_join import join_connection

    return join_connection(chunk_rows) if engine == "duckdb" else None


def _check_model_inputs(
    spec: FeatureSpec, service: ResolvedService, model_name: str, version: str
) -> None:
    provided = {*service.feature_columns, *service.request_fields}
    missing = [c for c in spec.columns if c not in provided]
    if missing:
        raise ConfigurationError(
            f"model {model_name!r} v{version} takes {', '.join(missing)}, which feature service "
            f"{service.name!r} and its request fields do not provide"
        )


def _output_columns(
    service: ResolvedService, timestamp: str, kept: list[str], output: str
) -> list[str]:
    columns = [*dict.fromkeys([*service.join_keys, timestamp, *kept])]
    clashes = [c for c in (output, MODEL_VERSION_COLUMN) if c in columns]
    if clashes or output == MODEL_VERSION_COLUMN:
        raise ConfigurationError(
            f"output column(s) {', '.join(clashes or [output])} clash with the entity rows' "
            "columns; rename them"
        )
    return [*columns, output, MODEL_VERSION_COLUMN]


def _open_entity_rows(
    path: Path, service: ResolvedService, timestamp: str, kept: list[str]
) -> pq.ParquetFile:
    """The entity rows file, opened (not read), its columns and row count checked."""
    from portside.components.features.entity_rows import open_entity_rows
    from portside.components.features.run import entity_row_columns

    required = [*entity_row_columns(service, timestamp), *kept]
    return open_entity_rows(path, required, "nothing to score")


@dataclass(frozen=True)
class _Scorer:
    """Everything a chunk goes through: the feature join, the model, the output columns."""

    store: object
    service: ResolvedService
    engine: str
    model: ServingModel
    timestamp: str
    point_in_time: str
    version: str
    columns: list[str]  # entity columns, then the score and the version column
    connection: object  # one DuckDB connection for every chunk (duckdb engine)

    def score(self, batch: pa.RecordBatch, source: str) -> tuple[pa.Table, dict[str, int]]:
        """The chunk's output rows, and per view the rows that found no history."""
        import pyarrow as pa

        from portside.components.features.run import join_features, prepare_entity_rows

        chunk = prepare_entity_rows(
            pa.Table.from_batches([batch]), self.service, self.timestamp, source
        )
        joined, missing = join_features(
            self.store,
            self.service,
            chunk,
            self.engine,
            self.timestamp,
            self.point_in_time,
            self.connection,
        )
        scores = self.model.predict(joined)
        *entity, output, version = self.columns
        scored = chunk.select(entity).replace_schema_metadata(None)
        scored = scored.append_column(output, pa.array(scores, pa.float32()))
        versions = pa.repeat(pa.scalar(self.version, pa.string()), len(scores))
        return scored.append_column(version, versions), missing


def _score_chunks(
    rows: pq.ParquetFile, path: Path, scorer: _Scorer, chunk_rows: int, target: Path
) -> tuple[_Totals, dict[str, int]]:
    """Score each chunk and append it to `target`; the totals and rows without history."""
    import pyarrow.parquet as pq

    from portside.components.features.run import entity_row_columns

    entity = scorer.columns[:-2]
    read = [*dict.fromkeys([*entity_row_columns(scorer.service, scorer.timestamp), *entity])]
    totals = _Totals()
    without_history = dict.fromkeys([view.name for view in scorer.service.views], 0)
    writer = None  # opened on the first chunk, with the normalized columns' schema
    try:
        for batch in rows.iter_batches(batch_size=chunk_rows, columns=read):
            scored, missing = scorer.score(batch, str(path))
            writer = writer or pq.ParquetWriter(target, scored.schema)
            writer.write_table(scored)
            totals.add(scored.column(scorer.columns[-2]).to_numpy())
            for view, count in missing.items():
                without_history[view] = without_history.get(view, 0) + count
    finally:
        if writer is not None:
            writer.close()
    return totals, without_history
