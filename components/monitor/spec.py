from portside.components.spec import Artifact, ComponentSpec, Parameter

SPEC = ComponentSpec(
    name="monitor",
    doc=(
        "Compare a window of recent data with the training baseline and say whether it "
        "drifted, whether serving skews from training, and whether the served model still "
        "does as well.\n\n"
        "Reads the baseline statistics (a model directory carries them with its validation "
        "scores; a validate output has the features' only: each number's decile bins, each "
        "category's frequencies), counts the window on the same bins in DuckDB over its "
        "Parquet files (bounded memory: nothing is loaded into pandas), and per feature "
        "computes the population stability index and the Jensen-Shannon distance; missing "
        "values are a bin of their own and categories the baseline never saw are counted. A "
        "feature drifts when the chosen metric exceeds its threshold; with fewer than "
        "min_samples rows its status is 'not enough data', never drift. Writes metrics.json, "
        "verdict.json (ok / drift / skew / quality-drop / not enough data, with reasons), "
        "metrics.prom and report.html with an "
        "overlay plot per drifted feature. A window without rows, lacking a baseline column, "
        "or built from another feature service version is an error and writes no verdict. On a "
        "serving prediction log it also compares the score distribution with the model's "
        "validation scores, the served features with the offline point-in-time values "
        "(feature_repo: training/serving skew), and the scores with labels that arrived later "
        "(labels: ROC AUC per model version and arm with a 95% interval, the canary's A/B "
        "readout, a quality drop against the model's validation AUC)."
    ),
    implementation="portside.components.monitor.run:run",
    # The prediction log and the labels are read by path and keep growing: never cached.
    cacheable=False,
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
            "Output directory: metrics.json, verdict.json, report.html, plots/, metrics.prom.",
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
        Parameter(
            "score_column",
            str,
            "score",
            "The window's score column (the prediction log's): prediction drift.",
        ),
        Parameter(
            "feature_repo",
            str,
            "",
            "Feast repo; set on a prediction log to check training/serving skew.",
        ),
        Parameter("skew_threshold", float, 0.01, "A feature skews above this share differing."),
        Parameter("skew_sample_rows", int, 20_000, "Logged predictions sampled for the skew."),
        Parameter(
            "labels",
            str,
            "",
            "Parquet file of labels that arrived (key, label): realized quality on a log.",
        ),
        Parameter(
            "labels_key",
            str,
            "",
            "The labels' key column, matched to the request id the client sent.",
        ),
        Parameter(
            "label_column",
            str,
            "",
            "The labels' label column (empty: the model baseline's label).",
        ),
        Parameter("min_labels", int, 500, "Fewer labelled predictions: no quality verdict."),
        Parameter(
            "max_auc_drop",
            float,
            0.05,
            "Quality drop: the champion's ROC AUC this far below its validation AUC.",
        ),
        Parameter(
            "model_name",
            str,
            "",
            "The model label of the exported metrics (empty: the feature service's name).",
        ),
        Parameter(
            "pushgateway",
            str,
            "",
            "Prometheus Pushgateway URL to push the metrics to (empty: metrics.prom only).",
        ),
        Parameter(
            "arm",
            str,
            "champion",
            "On a prediction log: the serving arm whose rows drift and skew read (empty: all).",
        ),
        Parameter(
            "history",
            str,
            "",
            "JSON Lines file of past windows' numbers (kept and updated): the report's trend.",
        ),
    ),
    returns=(Parameter("verdict", str, "", "ok, drift, skew, quality-drop or not enough data."),),
)
