from portside.components.spec import REQUIRED, Artifact, ComponentSpec, Parameter

# Where the features come from and how they are joined: batch_predict joins the same way,
# so it takes these, declared once.
FEATURE_REPO = Parameter(
    "feature_repo",
    str,
    "feature_repo",
    "Path of the Feast repo (feature_store.yaml).",
    # a relative path names another repo from another working directory
    resolve="os.path:abspath",
)
JOIN_PARAMETERS = (
    Parameter(
        "point_in_time",
        str,
        "as_known",
        "as_known: a feature row counts only once created (landed); "
        "feast: Feast's default, created time only breaks ties (backfills leak).",
        choices=("as_known", "feast"),
    ),
    Parameter("full_feature_names", bool, False, "Prefix features with their view name."),
    Parameter(
        "engine",
        str,
        "auto",
        "duckdb: Portside's join over Parquet sources; feast: the repo's offline store "
        "(e.g. BigQuery, Feast semantics); auto: duckdb when all sources are Parquet.",
        choices=("auto", "duckdb", "feast"),
    ),
)

SPEC = ComponentSpec(
    name="features",
    doc=(
        "Build a point-in-time correct training set from the Feast feature store.\n\n"
        "Joins labelled entity rows (entity key, event timestamp, label, request-time fields) "
        "to the features of one FeatureService as they were known at each row's time, applies "
        "its on-demand transformations, and writes the training set as Parquet with a manifest "
        "(entity keys, timestamp, label, feature columns and request fields; feature service "
        "hash, time range, row counts, null counts, content fingerprint). "
        "Never drops an entity row: rows without history get nulls."
    ),
    implementation="portside.components.features.run:run",
    # The feature store behind it moves: a cached training set is reused only while the
    # definitions and source files it read are byte for byte the same.
    revalidate="portside.components.features.cache:sources_unchanged",
    inputs=(Artifact("entity_rows", "dataset", "Parquet file of labelled entity rows."),),
    outputs=(
        Artifact(
            "training_set",
            "dataset",
            "Output directory: training_set.parquet and manifest.json.",
        ),
    ),
    parameters=(
        Parameter("feature_service", str, REQUIRED, "Feast FeatureService to join."),
        FEATURE_REPO,
        Parameter("event_timestamp_column", str, "event_timestamp", "Entity rows' time column."),
        Parameter("label_column", str, REQUIRED, "Label column of the entity rows."),
        # A scheduled run trains on its own data interval, so a re-run or backfill of a past
        # interval builds the same training set whatever else the file holds.
        Parameter(
            "rows_from",
            str,
            "",
            "ISO time: use only entity rows at or after it (naive means UTC); empty: no bound.",
        ),
        Parameter(
            "rows_until",
            str,
            "",
            "ISO time: use only entity rows before it (naive means UTC); empty: no bound.",
        ),
        *JOIN_PARAMETERS,
    ),
)
