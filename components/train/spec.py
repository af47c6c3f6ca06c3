from portside.components.spec import Artifact, ComponentSpec, Parameter

SPEC = ComponentSpec(
    name="train",
    doc=(
        "Train a binary classifier (TensorFlow/Keras) on a validated training set.\n\n"
        "Refuses to run unless the validate component passed. Splits the training set by event "
        "time (train / validation / test; the test window is left for evaluate), fits a Keras "
        "model whose preprocessing (imputation with missing indicators, log and scaling of "
        "numeric columns, vocabulary lookup of categorical ones) lives inside the model and is "
        "adapted on the train split only, and exports a SavedModel whose serving signature takes "
        "raw feature values. The inputs are the features and request fields the training "
        "set's manifest declares; label and timestamp come from it too. The split's boundaries "
        "go to split.json, which evaluate cuts at. Writes training metrics and curves and logs "
        "the run to MLflow."
    ),
    implementation="portside.components.train.run:run",
    inputs=(
        Artifact(
            "training_set",
            "dataset",
            "Output directory of the features component (training_set.parquet).",
        ),
        Artifact(
            "validation",
            "directory",
            "Output of the validate component; training refuses unless it passed.",
        ),
    ),
    outputs=(
        Artifact(
            "model",
            "model",
            "Directory: saved_model/, feature_spec.json, split.json, metrics.json, curves, "
            "and the monitoring baseline (statistics.json, reference_scores.json).",
        ),
    ),
    parameters=(
        Parameter("epochs", int, 8, "Maximum epochs; early stopping on validation ROC AUC."),
        Parameter("batch_size", int, 1024, "Rows per training step."),
        Parameter("learning_rate", float, 1e-3, "Adam learning rate."),
        Parameter("hidden_units", str, "64,32", "Comma-separated sizes of the dense layers."),
        Parameter("seed", int, 7, "Seed of weights and shuffling; same seed, same model."),
        Parameter("validation_fraction", float, 0.15, "Share of rows (by time) for validation."),
        Parameter("test_fraction", float, 0.15, "Latest share of rows, held out for evaluate."),
        Parameter(
            "output_name",
            str,
            "probability",
            "Name of the serving signature's output (recorded in feature_spec.json).",
        ),
        Parameter(
            "tracking_uri",
            str,
            "",
            "MLflow tracking URI or SQLite file path; empty = embedded default (data/mlflow).",
            resolve="portside.components.common.tracking:resolve_tracking_uri",
        ),
        Parameter("experiment", str, "portside-training", "MLflow experiment name."),
    ),
)
