from portside.components.spec import REQUIRED, Artifact, ComponentSpec, Parameter

SPEC = ComponentSpec(
    name="validate",
    doc=(
        "Gate the training set with a Great Expectations suite.\n\n"
        "Runs a Great Expectations 1.x ExpectationSuite (JSON, next to the feature definitions) "
        "on the training set: schema, nulls, ranges, allowed categories, row count, label rate, "
        "duplicates, freshness, and per numeric feature an upper bound and quantile and mean "
        "bands proposed from reference data (`portside expectations propose`). Writes the GX "
        "result JSON, an HTML report, per-column statistics (the baseline for later drift "
        "checks) and a summary. If any expectation "
        "fails it still writes all of them, then stops the pipeline (exit code 3)."
    ),
    implementation="portside.components.validate.run:run",
    # Cached on the training set's content, the suite file's content and an explicit as_of;
    # a run judged against "now" (as_of empty) is never cached.
    inputs=(
        Artifact(
            "training_set",
            "dataset",
            "Directory written by the features component: training_set.parquet + manifest.json.",
        ),
    ),
    outputs=(
        Artifact(
            "validation",
            "directory",
            "Output directory: result.json, report.html, statistics.json and summary.json.",
        ),
    ),
    parameters=(
        Parameter(
            "suite", str, REQUIRED, "Expectation suite (GX ExpectationSuite JSON).", file=True
        ),
        Parameter(
            "as_of",
            str,
            "",
            "ISO time that freshness is judged against (naive means UTC); empty means now.",
            now_if_empty=True,
        ),
        Parameter(
            "max_unseen_category_fraction",
            float,
            0.01,
            "Largest fraction of a categorical column allowed outside the suite's value set.",
        ),
    ),
)
