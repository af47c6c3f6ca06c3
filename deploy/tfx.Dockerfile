# The TFX pipeline's image: TFX 1.16 (Python 3.10) with Portside's components, without Feast.
# Every step of `portside compile --tfx` runs in it: TFX's own (StatisticsGen, SchemaGen,
# ExampleValidator) and Portside's (executors `pipelines.tfx_components.*_Executor`). The stock
# TFX image lacks the latter. Build with `make tfx-image` (tag = package version); requirements
# are pinned, with hashes, from deploy/tfx/uv.lock (`make requirements`); the project comes in
# as the built wheel. Versions and why: deploy/tfx/pyproject.toml.
FROM python:3.10-slim

ARG VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY deploy/requirements/tfx.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY dist/portside-${VERSION}-py3-none-any.whl /tmp/
RUN pip install --no-deps /tmp/portside-${VERSION}-py3-none-any.whl && rm /tmp/*.whl

# Lineage: every run manifest records the image it ran in.
ARG IMAGE_NAME=portside-tfx
ENV PORTSIDE_IMAGE=${IMAGE_NAME}:${VERSION}

# The expectation suites validate reads (the compiled pipeline names them by this path).
COPY feature_repo/expectations /opt/portside/feature_repo/expectations
WORKDIR /workspace
# No entrypoint: Vertex AI starts TFX's launcher
# (python -m tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor ...).
