"""KFP v2 components generated from the component specs: no hand-written copy per component.

For each spec we generate the source of a typed lightweight component whose body calls
`pipelines.kfp_shim.run_task` inside the project image, define it (`pipelines.generated`: KFP
reads the source back with `inspect.getsource` to embed it in the IR) and apply
`dsl.component(base_image=<project image>, install_kfp_package=False)`: the image already
holds kfp and the project, and kfp.local's SubprocessRunner runs the same component here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from portside.components.image import component_image
from portside.components.registry import component_names, get_spec
from portside.components.spec import ComponentSpec
from portside.pipelines.generated import define_function
from portside.pipelines.kfp_import import import_kfp

KFP_ARTIFACT_TYPES = {
    "dataset": "Dataset",
    "model": "Model",
    "directory": "Artifact",
    "metrics": "Metrics",
    "html": "HTML",
}
CACHE_PARAMETER = "portside_cache_dir"


@dataclass(frozen=True)
class ArtifactUriDefault:
    """A parameter that, left empty, takes an input artifact's URI inside the task (on Vertex
    AI a gs:// URI), only when another parameter has a given value."""

    parameter: str
    artifact: str
    when: tuple[str, str]  # (parameter, value)


# registry=vertex: Vertex AI uploads the model from where the pipeline already stored it.
ARTIFACT_URI_DEFAULTS: dict[str, tuple[ArtifactUriDefault, ...]] = {
    "push": (ArtifactUriDefault("vertex_artifact_uri", "model", ("registry", "vertex")),),
}


@dataclass(frozen=True)
class UiOutput:
    """An extra KFP output made from a file the component wrote, for the pipeline UI."""

    name: str
    kfp_type: str  # HTML | Metrics | ClassificationMetrics
    source_output: str
    source_file: str  # a name or a glob in that output's directory


UI_OUTPUTS: dict[str, tuple[UiOutput, ...]] = {
    "validate": (UiOutput("report", "HTML", "validation", "report.html"),),
    "train": (UiOutput("training_metrics", "Metrics", "model", "metrics.json"),),
    "evaluate": (
        UiOutput("metrics", "Metrics", "evaluation", "metrics.json"),
        UiOutput("classification_metrics", "ClassificationMetrics", "evaluation", "metrics.json"),
        UiOutput("plots", "HTML", "evaluation", "*.png"),
    ),
    "monitor": (UiOutput("report", "HTML", "monitoring", "report.html"),),
}


def component_source(spec: ComponentSpec) -> str:
    """Python source of the lightweight component function for `spec`."""
    signature: list[str] = []
    for artifact in spec.inputs:
        signature.append(f"{artifact.name}: Input[{KFP_ARTIFACT_TYPES[artifact.kind]}]")
    for artifact in spec.outputs:
        signature.append(f"{artifact.name}: Output[{KFP_ARTIFACT_TYPES[artifact.kind]}]")
    ui = UI_OUTPUTS.get(spec.name, ())
    signature += [f"{u.name}: Output[{u.kfp_type}]" for u in ui]
    # Required parameters first: Python puts parameters without a default before the others.
    for param in sorted(spec.parameters, key=lambda p: not p.required):
        default = "" if param.required else f" = {param.default!r}"
        signature.append(f"{param.name}: {param.type.__name__}{default}")
    signature.append(f"{CACHE_PARAMETER}: str = ''")
    returns = ""
    if len(spec.returns) == 1:
        # A single result is KFP's plain `Output`; kfp.local resolves dsl.If conditions only
        # on such outputs (a named output's channel is mistaken for a pipeline input).
        returns = f" -> {spec.returns[0].type.__name__}"
    elif spec.returns:
        fields = ", ".join(f"({r.name!r}, {r.type.__name__})" for r in spec.returns)
        returns = f" -> NamedTuple('Outputs', [{fields}])"
    paths = ", ".join(f"{a.name!r}: {a.name}.path" for a in (*spec.inputs, *spec.outputs))
    uris = ", ".join(f"{a.name!r}: {a.name}.uri" for a in spec.inputs)
    params = ", ".join(f"{p.name!r}: {p.name}" for p in spec.parameters)
    ui_args = ", ".join(f"{u.name!r}: {u.name}" for u in ui)
    body = (
        f"    from portside.pipelines.kfp_shim import run_task\n"
        f"    return run_task({spec.name!r}, {{{paths}}}, {{{params}}}, {{{ui_args}}}, "
        f"{CACHE_PARAMETER}, {{{uris}}})\n"
    )
    doc = spec.doc.split("\n")[0].replace('"""', "'")
    return f'def {spec.name}({", ".join(signature)}){returns}:\n    """{doc}"""\n{body}'


def kfp_component(spec: ComponentSpec, image: str | None = None) -> Any:
    """The KFP component for `spec`, running in `image` (default: the versioned project image)."""
    from typing import NamedTuple

    import_kfp()
    from kfp import dsl
    from kfp.dsl import (
        HTML,
        Artifact,
        ClassificationMetrics,
        Dataset,
        Input,
        Metrics,
        Model,
        Output,
    )

    source = component_source(spec)
    namespace: dict[str, Any] = {
        "Input": Input,
        "Output": Output,
        "Artifact": Artifact,
        "Dataset": Dataset,
        "Model": Model,
        "Metrics": Metrics,
        "ClassificationMetrics": ClassificationMetrics,
        "HTML": HTML,
        "NamedTuple": NamedTuple,
    }
    filename = f"<portside-kfp-{spec.name}>"
    function = define_function(source, spec.name, namespace, __name__, filename)
    return dsl.component(function, base_image=image or component_image(), install_kfp_package=False)


def kfp_components(image: str | None = None) -> dict[str, Any]:
    return {name: kfp_component(get_spec(name), image) for name in component_names()}
