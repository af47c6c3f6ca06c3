from portside.components.features.spec import FEATURE_REPO, JOIN_PARAMETERS
from portside.components.push.spec import REGISTRY_PARAMETERS
from portside.components.spec import Artifact, ComponentSpec, Parameter

SPEC = ComponentSpec(
    name="batch_predict",
    doc=(
        "Score a Parquet file of entity rows with one model version from the registry.\n\n"
        "Reads the entity rows (entity keys, event timestamp, request-time fields) in chunks "
        "of chunk_rows, joins each chunk to the features of the model's FeatureService as they "
        "were known at each row's time (the features component's join, on-demand views "
        "included), scores it through the model's exported serving signature and appends it "
        "to predictions.parquet: entity keys, timestamp, the model's output column and "
        "model_version, in input order. Memory is bounded by the chunk, not the file. Writes "
        "metrics.json (model version, feature service, rows, score summary)."
    ),
    implementation="portside.components.batch_predict.run:run",
    # The scores depend on a moving feature store and, for "champion", on a moving alias.
    cacheable=False,
    inputs=(Artifact("entity_rows", "dataset", "Parquet file of entity rows to score."),),
    outputs=(
        Artifact(
            "predictions",
            "dataset",
            "Output directory: predictions.parquet and metrics.json.",
        ),
    ),
    parameters=(
        *REGISTRY_PARAMETERS,
        Parameter("model_version", str, "champion", "Registry version to score with, or champion."),
        FEATURE_REPO,
        Parameter(
            "feature_service",
            str,
            "",
            "Feast FeatureService to join; empty: the one the model was trained on.",
        ),
        Parameter(
            "event_timestamp_column",
            str,
            "",
            "Entity rows' time column; empty: the model's training timestamp column.",
        ),
        *JOIN_PARAMETERS,
        Parameter("chunk_rows", int, 100_000, "Entity rows joined and scored at a time."),
        Parameter(
            "keep_columns",
            str,
            "",
            "Comma-separated entity-row columns copied to the output too (e.g. a row id).",
        ),
    ),
    returns=(Parameter("model_version", str, "", "The registry version that scored the rows."),),
)
