"""The TFX bindings' generated source, checked without TFX (it is in the TFX environment only):
one function per spec, the spec's artifacts and parameters as TFX annotations. The custom
types' Vertex-valid names are checked on the compiled spec (integration/test_vertex_submit.py)."""

from __future__ import annotations

import ast

import pytest

from portside.components.registry import get_spec
from portside.components.spec import Artifact, ComponentSpec
from portside.pipelines.kfp_components import CACHE_PARAMETER
from portside.pipelines.tfx_components import (
    TFX_ARTIFACT_TYPES,
    TFX_COMPONENTS,
    component_name,
    component_source,
)


@pytest.mark.parametrize("name", TFX_COMPONENTS)
def test_each_spec_becomes_a_typed_tfx_function(name):
    spec = get_spec(name)
    (function,) = ast.parse(component_source(spec)).body
    assert function.name == component_name(name) and function.name.startswith("Portside")
    annotations = {a.arg: ast.unparse(a.annotation) for a in function.args.args}
    for artifact in spec.inputs:
        assert annotations[artifact.name] == f"InputArtifact[{TFX_ARTIFACT_TYPES[artifact.name]}]"
    for artifact in spec.outputs:
        assert annotations[artifact.name] == f"OutputArtifact[{TFX_ARTIFACT_TYPES[artifact.name]}]"
    for param in spec.parameters:
        assert annotations[param.name] == f"Parameter[{param.type.__name__}]"
    assert annotations[CACHE_PARAMETER] == "Parameter[str]"
    # Required parameters (a model name) have no default; every other one keeps the spec's.
    defaults = dict(
        zip(
            reversed([a.arg for a in function.args.args]),
            reversed([ast.literal_eval(d) for d in function.args.defaults]),
            strict=False,  # the arguments without a default come first and are left out
        )
    )
    for param in spec.parameters:
        if param.required:
            assert param.name not in defaults
        else:
            assert defaults[param.name] == param.default


def test_an_artifact_without_a_tfx_type_is_refused_by_name():
    spec = ComponentSpec("score", "Score.", "x:y", outputs=(Artifact("scores", "dataset", "d"),))
    with pytest.raises(ValueError, match="score: artifact 'scores' has no TFX type"):
        component_source(spec)
