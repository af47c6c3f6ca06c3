"""The project's images (deploy/component.Dockerfile, deploy/tfx.Dockerfile); every tag is the
package version."""

from __future__ import annotations

import importlib.metadata

DEFAULT_REPOSITORY = "us-docker.pkg.dev/portside-project/portside/components"
# The TFX pipeline's image (deploy/tfx.Dockerfile): TFX 1.16 and the components, without Feast.
DEFAULT_TFX_REPOSITORY = "us-docker.pkg.dev/portside-project/portside/tfx"
# The component image's `serving` target: the same layers, the server as entrypoint, HEALTHCHECK.
DEFAULT_SERVING_REPOSITORY = "us-docker.pkg.dev/portside-project/portside/serving"


def package_version() -> str:
    try:
        return importlib.metadata.version("portside")
    except importlib.metadata.PackageNotFoundError:
        return "0.0.0+unknown"


def component_image(repository: str = DEFAULT_REPOSITORY) -> str:
    """`<repository>:<package version>`, e.g. .../components:0.1.0."""
    return f"{repository}:{package_version()}"


def tfx_image(repository: str = DEFAULT_TFX_REPOSITORY) -> str:
    """`<repository>:<package version>`: the image every step of the TFX pipeline runs in."""
    return f"{repository}:{package_version()}"


def serving_image(repository: str = DEFAULT_SERVING_REPOSITORY) -> str:
    """`<repository>:<package version>`: the prediction server for `docker run`."""
    return f"{repository}:{package_version()}"
