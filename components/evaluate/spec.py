from portside.components.push.spec import REGISTRY_PARAMETERS
from portside.components.spec import Artifact, ComponentSpec, Parameter

SPEC = ComponentSpec(
    name="evaluate",
    doc=(
        "Judge a trained model on the held-out test window and decide whether to bless it.\n\n"
        "Scores the test window of the training set (cut at the boundaries train recorded in "
        "the model's split.json) through "
        "the model's exported serving signature: ROC AUC, PR AUC, log loss, recall at 1% false "
        "positive rate and calibration, with ROC, PR and reliability plots. The model is blessed "
        "only if the absolute thresholds are met, it is not worse than the registry's current "
        "champion on the same window by more than max_regression (ROC AUC), and the validation "
        "gate passed. No champion is the explicit first-run case. Returns normally either way; "
        "blessing.json says yes or no with one reason per check."
    ),
    implementation="portside.components.evaluate.run:run",
    # The verdict depends on the registry's current champion, which is not an input: a cached
    # verdict is reused only while that champion is unchanged.
    revalidate="portside.components.evaluate.cache:same_champion",
    inputs=(
        Artifact("model", "model", "Model directory written by train."),
        Artifact("training_set", "dataset", "Training set directory (training_set.parquet)."),
        Artifact("validation", "directory", "Validation output directory (summary.json)."),
    ),
    outputs=(
        Artifact(
            "evaluation",
            "metrics",
            "Output directory: metrics.json, blessing.json, roc.png, pr.png, calibration.png.",
        ),
    ),
    parameters=(
        Parameter("min_roc_auc", float, 0.75, "Lowest acceptable ROC AUC on the test window."),
        Parameter("min_pr_auc", float, 0.10, "Lowest acceptable PR AUC (average precision)."),
        Parameter(
            "max_regression",
            float,
            0.01,
            "Largest allowed drop of ROC AUC against the champion on the same test window.",
        ),
        # the champion to beat is the one push would replace
        *REGISTRY_PARAMETERS,
    ),
    returns=(Parameter("blessed", bool, False, "Whether push may publish this model."),),
)
