# The TFX pipeline's image: TFX 1.16 (Python 3.10) with Portside's components, without Feast.
# Every step of `portside compile --tfx` runs in it: TFX's own (StatisticsGen, SchemaGen,
# ExampleValidator) and Portside's (executors `pipelines.tfx_components.*_Executor`). The stock
# TFX image lacks the latter. Build with `make tfx-image` (tag = package version); requirements
# are pinned, with hashes, from deploy/tfx/uv.lock (`make requirements`); the project comes in
# as the built wheel. Versions and why: deploy/tfx/pyproject.toml. As in the component image,
# a build stage fills a virtualenv and the final stage copies only that, running unprivileged.
ARG PYTHON_IMAGE=python:3.10-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY deploy/requirements/tfx.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.txt
COPY dist/portside-${VERSION}-py3-none-any.whl /tmp/
RUN /opt/venv/bin/pip install --no-deps /tmp/portside-${VERSION}-py3-none-any.whl

FROM ${PYTHON_IMAGE}
ARG VERSION
ARG GIT_SHA=unknown
# Lineage: every run manifest records the image it ran in.
ARG IMAGE_NAME=portside-tfx
LABEL org.opencontainers.image.title="portside-tfx" \
      org.opencontainers.image.description="Portside's TFX pipeline steps (TFX 1.16)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PORTSIDE_IMAGE=${IMAGE_NAME}:${VERSION}
RUN useradd --no-log-init --create-home --uid 10001 --gid 0 --shell /usr/sbin/nologin portside
COPY --from=build /opt/venv /opt/venv

# The expectation suites validate reads (the compiled pipeline names them by this path).
COPY feature_repo/expectations /opt/portside/feature_repo/expectations
WORKDIR /workspace
RUN chown portside:0 /workspace
USER 10001
# No entrypoint: Vertex AI starts TFX's launcher
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...).
