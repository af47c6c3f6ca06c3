"""TFX components generated from the component specs, next to the KFP ones (kfp_components).

For validate, train, evaluate and push we generate the source of a TFX Python function component
whose body calls `pipelines.tfx_shim.run_tfx_task`, exec it with this module as its
`__module__`, and apply `tfx.dsl.components.component`. The decorator registers
`<Name>_Executor` in this module, so TFX (and Vertex AI, which imports executors by class path)
finds `pipelines.tfx_components.PortsideTrain_Executor`. The classes are built on first access
(module `__getattr__`): importing this module imports nothing heavy, and a fresh executor
process that imports a class by its path builds them the same way.

The artifacts are TFX's standard types where one fits, so Portside's steps sit next to
StatisticsGen, SchemaGen, ExampleValidator and Pusher: the training set is an `Examples`
artifact (`portside/` holding `training_set.parquet` and `manifest.json` as the features
component wrote them, which Portside's steps read and hash; `Split-train/` the same rows as
tf.Examples for TFX's components), the model a `Model`,
evaluate's output a `ModelBlessing` (custom property `blessed`) and push's a `PushedModel`
(`pushed`). Validate's output has no TFX counterpart: `portside.ValidationResult`.

Caching is Portside's, as in the KFP binding: each step takes `portside_cache_dir` and the
pipeline runs with TFX's cache off. TFX keys its cache on a step's class path, parameters and
input artifacts only: not on the code, a parameter file's content (the expectation suite) or
the registry's champion, which Portside's cache key and revalidation cover.

This module runs only in the TFX environment (.venv-tfx); the source generation is plain
Python and is tested in the main one too.
"""

# No `from __future__ import annotations`: TFX reads the component's types from real
# annotation objects.
import functools
from typing import Any

from portside.components.registry import get_spec
from portside.components.spec import ComponentSpec
from portside.pipelines.generated import define_function
from portside.pipelines.kfp_components import CACHE_PARAMETER

# The components of the training pipeline after `features`, which cannot run here (Feast).
TFX_COMPONENTS = ("validate", "train", "evaluate", "push")
# The TFX artifact type of each artifact the specs name; the custom ones are defined below.
TFX_ARTIFACT_TYPES = {
    "training_set": "Examples",
    "validation": "ValidationResult",
    "model": "Model",
    "evaluation": "ModelBlessing",
    "pushed": "PushedModel",
}
# Vertex AI requires `namespace.TypeName` for custom artifact types.
CUSTOM_TYPE_NAMES = {"ValidationResult": "portside.ValidationResult"}
# Inside an Examples artifact: the tf.Examples split TFX's components read, and the folder
# holding the training set as Portside's steps read it. A folder of its own: the tf.Examples
# bytes differ from run to run (proto maps serialize in no fixed order), so they must stay
# out of what Portside's cache key hashes.
EXAMPLES_SPLIT = "train"
TRAINING_SET_DIR = "portside"


def component_name(spec_name: str) -> str:
    """validate -> PortsideValidate: distinct from TFX's own Trainer, Evaluator, Pusher."""
    return "Portside" + spec_name.title().replace("_", "")


def component_source(spec: ComponentSpec) -> str:
    """Python source of the TFX function component for `spec`."""
    signature: list[str] = []
    for artifact in spec.inputs:
        signature.append(f"{artifact.name}: InputArtifact[{_artifact_type(spec, artifact.name)}]")
    for artifact in spec.outputs:
        signature.append(f"{artifact.name}: OutputArtifact[{_artifact_type(spec, artifact.name)}]")
    for param in sorted(spec.parameters, key=lambda p: not p.required):
        default = "" if param.required else f" = {param.default!r}"
        signature.append(f"{param.name}: Parameter[{param.type.__name__}]{default}")
    signature.append(f"{CACHE_PARAMETER}: Parameter[str] = ''")
    artifacts = ", ".join(f"{a.name!r}: {a.name}" for a in (*spec.inputs, *spec.outputs))
    params = ", ".join(f"{p.name!r}: {p.name}" for p in spec.parameters)
    doc = spec.doc.split("\n")[0].replace('"""', "'")
    return (
        f"def {component_name(spec.name)}({', '.join(signature)}) -> None:\n"
        f'    """{doc}"""\n'
        f"    from portside.pipelines.tfx_shim import run_tfx_task\n"
        f"    run_tfx_task({spec.name!r}, {{{artifacts}}}, {{{params}}}, {CACHE_PARAMETER})\n"
    )


def _artifact_type(spec: ComponentSpec, artifact: str) -> str:
    if artifact not in TFX_ARTIFACT_TYPES:
        raise ValueError(f"{spec.name}: artifact {artifact!r} has no TFX type (TFX_ARTIFACT_TYPES)")
    return TFX_ARTIFACT_TYPES[artifact]


@functools.cache
def artifact_types() -> dict[str, type]:
    """TFX artifact classes by the names TFX_ARTIFACT_TYPES uses."""
    from tfx.types import artifact, standard_artifacts

    types: dict[str, type] = {
        name: getattr(standard_artifacts, name)
        for name in set(TFX_ARTIFACT_TYPES.values())
        if name not in CUSTOM_TYPE_NAMES
    }
    for name, type_name in CUSTOM_TYPE_NAMES.items():
        types[name] = type(name, (artifact.Artifact,), {"TYPE_NAME": type_name})
        types[name].__module__ = __name__
    return types


@functools.cache
def tfx_components() -> dict[str, Any]:
    """The TFX component classes: the Portside steps by spec name, and `examples`."""
    import sys

    from tfx import v1 as tfx
    from tfx.dsl.component.experimental.annotations import (
        InputArtifact,
        OutputArtifact,
        Parameter,
    )

    namespace: dict[str, Any] = {
        "InputArtifact": InputArtifact,
        "OutputArtifact": OutputArtifact,
        "Parameter": Parameter,
        **artifact_types(),
        "__name__": __name__,
    }
    module = sys.modules[__name__]
    for name, custom in artifact_types().items():
        if name in CUSTOM_TYPE_NAMES:
            setattr(module, name, custom)  # importable by path, as TFX resolves types
    built: dict[str, Any] = {}
    for name in TFX_COMPONENTS:
        source = component_source(get_spec(name))
        function = define_function(
            source, component_name(name), namespace, __name__, f"<portside-tfx-{name}>"
        )
        built[name] = tfx.dsl.components.component(function)
        setattr(module, component_name(name), built[name])
    built["examples"] = _training_set_example_gen(tfx)
    module.TrainingSetExampleGen = built["examples"]
    return built


def _training_set_example_gen(tfx: Any) -> Any:
    """The ExampleGen of Portside's TFX pipeline: the features component's training set as an
    `Examples` artifact (see the module docstring)."""
    from tfx.dsl.component.experimental.annotations import OutputArtifact, Parameter
    from tfx.types import standard_artifacts

    def TrainingSetExampleGen(  # noqa: N802 (a TFX component class name)
        training_set_uri: Parameter[str],
        examples: OutputArtifact[standard_artifacts.Examples],
    ) -> None:
        """Import the training set the features component wrote (a folder, local or gs://)."""
        from portside.pipelines.tfx_shim import import_training_set

        import_training_set(training_set_uri, examples)

    # As if defined at this module's top level, where TFX imports the executor by path.
    TrainingSetExampleGen.__module__ = __name__
    TrainingSetExampleGen.__qualname__ = TrainingSetExampleGen.__name__
    return tfx.dsl.components.component(TrainingSetExampleGen)


def __getattr__(name: str) -> Any:
    """`PortsideTrain`, `PortsideTrain_Executor`, `ValidationResult`...: built on first use."""
    if name.startswith("__"):
        raise AttributeError(name)
    tfx_components()
    if name in globals():
        return globals()[name]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
