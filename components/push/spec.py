from portside.components.spec import REQUIRED, Artifact, ComponentSpec, Parameter

# The newest TensorFlow CPU prediction image google-cloud-aiplatform lists; override it with
# vertex_serving_image when a newer one is published for the TensorFlow the model was saved with.
DEFAULT_VERTEX_SERVING_IMAGE = "us-docker.pkg.dev/vertex-ai/prediction/tf2-cpu.2-15:latest"

# Which registry and model: evaluate judges against its champion, push replaces that champion
# (and refuses a blessing judged against another), so both take these, declared once.
REGISTRY_PARAMETERS = (
    Parameter("registry", str, "mlflow", "Model registry.", choices=("mlflow", "vertex")),
    Parameter("model_name", str, REQUIRED, "Registered model (Vertex display name)."),
    Parameter(
        "tracking_uri",
        str,
        "",
        "MLflow tracking/registry URI; empty = embedded SQLite.",
        resolve="portside.components.common.tracking:resolve_tracking_uri",
    ),
    Parameter("vertex_project", str, "", "Google Cloud project (vertex)."),
    Parameter("vertex_location", str, "us-central1", "Vertex AI region (vertex)."),
    Parameter("vertex_api_endpoint", str, "", "Vertex AI API endpoint override; empty = regional."),
)

SPEC = ComponentSpec(
    name="push",
    doc=(
        "Publish a blessed model to a model registry and make it the champion.\n\n"
        "Refuses (gate failed) unless the evaluation blessed exactly this model, and moves "
        "the champion only if it is still the one the evaluation compared against "
        "(compare-and-swap; otherwise gate failed, nothing moved). MLflow "
        "(default): registers an immutable version holding the model directory, tagged with its "
        "content hash and marked complete once its files are verified; the same content pushed "
        "again returns the existing version; the 'champion' alias moves only after the version "
        "is complete. Vertex AI: uploads a new version of the Vertex model (parent model by "
        "display name) from the staged gs:// copy of the model directory, aliased 'champion'."
    ),
    implementation="portside.components.push.run:run",
    # Side effects on a registry: a cached push is reused only while the version it pushed is
    # still the champion (MLflow); a Vertex push always runs.
    revalidate="portside.components.push.cache:still_champion",
    inputs=(
        Artifact("model", "model", "Model directory written by train."),
        Artifact("evaluation", "metrics", "Evaluation directory (blessing.json)."),
    ),
    outputs=(Artifact("pushed", "directory", "Output directory: pushed.json."),),
    parameters=(
        *REGISTRY_PARAMETERS,
        Parameter(
            "vertex_artifact_uri",
            str,
            "",
            "gs:// folder where the model directory has been staged (vertex; required).",
        ),
        Parameter(
            "vertex_serving_image",
            str,
            DEFAULT_VERTEX_SERVING_IMAGE,
            "Serving container image (vertex).",
        ),
    ),
    returns=(Parameter("version", str, "", "The registry version now holding the model."),),
    # "Not blessed" (or a champion that moved meanwhile) means nothing to publish: the step is
    # skipped, the run stays green.
    on_gate_failed="skip",
)
