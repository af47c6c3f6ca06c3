from components.spec import Artifact, ComponentSpec, Parameter

SPEC = ComponentSpec(
    name="monitor",
    doc=(
        "Compare a window of recent data with the training baseline and say whether it "
        "drifted.\n\n"
        "Reads the baseline statistics validate wrote (each number's decile bins, each "
        "category's frequencies), counts the window on the same bins in DuckDB over its "
        "Parquet files (bounded memory: nothing is loaded into pandas), and per feature "
        "computes the population stability index and the Jensen-Shannon distance; missing "
        "values are a bin of their own and categories the baseline never saw are counted. A "
        "feature drifts when the chosen metric exceeds its threshold; with fewer than "
        "min_samples rows its status is 'not enough data', never drift. Writes metrics.json, "
        "verdict.json (ok / drift / not enough data, with reasons) and report.html with an "
        "overlay plot per drifted feature. A window without rows, lacking a baseline column, "
        "or built from another feature service version is an error and writes no verdict."
    ),
    implementation="components.monitor.run:run",
    inputs=(
        Artifact(
            "baseline",
            "directory",
            "Output directory of the validate component (statistics.json).",
        ),
        Artifact(
            "window",
            "dataset",
            "Recent rows: a Parquet file, a features output, or a folder of Parquet files "
            "(the serving prediction log).",
        ),
    ),
    outputs=(
        Artifact(
            "monitoring",
            "directory",
            "Output directory: metrics.json, verdict.json, report.html, plots/.",
        ),
    ),
    parameters=(
        Parameter("window_start", str, "", "ISO time; rows at or after it (empty: no bound)."),
        Parameter("window_end", str, "", "ISO time; rows before it (empty: no bound)."),
        Parameter(
            "timestamp_column",
            str,
            "event_timestamp",
            "The window's time column (the prediction log's is timestamp).",
        ),
        Parameter(
            "drift_metric",
            str,
            "psi",
            "Which distance decides: psi (population stability index) or js (Jensen-Shannon).",
            choices=("psi", "js"),
        ),
        Parameter("drift_threshold", float, 0.2, "A feature drifts above this distance."),
        Parameter(
            "feature_thresholds",
            str,
            "",
            'Per-feature thresholds over the default, as JSON: {"amount": 0.1}.',
        ),
        Parameter(
            "min_samples",
            int,
            500,
            "Fewer rows in the window: 'not enough data', never drift.",
        ),
    ),
    returns=(Parameter("verdict", str, "", "ok, drift or not enough data."),),
)
