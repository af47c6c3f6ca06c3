# One image for every Portside component: `python -m components <name> --arg value ...`.
# Build with `make image` (tag = package version). Requirements are pinned, with hashes, from
# uv.lock (`make requirements`); the project itself comes in as the built wheel.
FROM python:3.11-slim

ARG VERSION
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN apt-get update \
    && apt-get install -y --no-install-recommends git \
    && rm -rf /var/lib/apt/lists/*

COPY deploy/requirements/component.txt /tmp/requirements.txt
RUN pip install --require-hashes --no-deps -r /tmp/requirements.txt && rm /tmp/requirements.txt

COPY dist/portside-${VERSION}-py3-none-any.whl /tmp/
RUN pip install --no-deps /tmp/portside-${VERSION}-py3-none-any.whl && rm /tmp/*.whl

# Lineage: every run manifest records the image it ran in.
ARG IMAGE_NAME=portside-components
ENV PORTSIDE_IMAGE=${IMAGE_NAME}:${VERSION}

# The Feast repo the features component reads (override with --feature-repo), with the
# production config: SQL registry and Redis, connections from FEAST_REGISTRY_URL and
# FEAST_REDIS_CONNECTION, which the production profile sets on every task. The image holds no
# offline data: the registry names the sources as `feast apply` was told by
# PORTSIDE_FEATURE_SOURCES (the profile's feast.sources, also set on every task).
COPY feature_repo /opt/portside/feature_repo
COPY deploy/feast/feature_store.yaml /opt/portside/feature_repo/feature_store.yaml
WORKDIR /workspace
ENTRYPOINT ["python", "-m", "components"]
