# One image for every Portside component: `python -m portside.components <name> --arg value ...`, and
# a `serving` target on top of it for the prediction server.
#
#   make image            # target component: <registry>/components:<package version>
#   make serving-image    # target serving:   <registry>/serving:<package version>
#
# Requirements are pinned, with hashes, from uv.lock (`make requirements`); the project itself
# comes in as the built wheel. The build stage installs them into a virtualenv; the final
# stages copy only that virtualenv (no pip cache, no wheel, no build tools) and run as an
# unprivileged user. KServe and Vertex AI run the component image with
# `command: [python, -m, portside.components, serve]` and probe it themselves (deploy/serving/); the
# serving target is the same image with that entrypoint and a Docker HEALTHCHECK, for `docker
# run` and Compose.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY deploy/requirements/component.txt /tmp/requirements.txt
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements.txt
COPY dist/portside-${VERSION}-py3-none-any.whl /tmp/
RUN /opt/venv/bin/pip install --no-deps /tmp/portside-${VERSION}-py3-none-any.whl

FROM ${PYTHON_IMAGE} AS component
ARG VERSION
ARG GIT_SHA=unknown
# Lineage: every run manifest records the image it ran in.
ARG IMAGE_NAME=portside-components
LABEL org.opencontainers.image.title="portside-components" \
      org.opencontainers.image.description="Portside pipeline components (python -m portside.components)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${GIT_SHA}"
ENV PATH=/opt/venv/bin:${PATH} \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    GIT_PYTHON_REFRESH=quiet \
    PORTSIDE_IMAGE=${IMAGE_NAME}:${VERSION}
RUN useradd --no-log-init --create-home --uid 10001 --gid 0 --shell /usr/sbin/nologin portside
COPY --from=build /opt/venv /opt/venv

# The Feast repo the features component reads (override with --feature-repo), with the
# production config: SQL registry and Redis, connections from FEAST_REGISTRY_URL and
# FEAST_REDIS_CONNECTION, which the production profile sets on every task. The image holds no
# offline data: the registry names the sources as `feast apply` was told by
# PORTSIDE_FEATURE_SOURCES (the profile's feast.sources, also set on every task). Owned by
# root: the components only read it.
COPY feature_repo /opt/portside/feature_repo
COPY deploy/feast/feature_store.yaml /opt/portside/feature_repo/feature_store.yaml
WORKDIR /workspace
RUN chown portside:0 /workspace
USER 10001
ENTRYPOINT ["python", "-m", "portside.components"]

FROM component AS serving
ARG IMAGE_NAME=portside-serving
ARG VERSION
LABEL org.opencontainers.image.title="portside-serving" \
      org.opencontainers.image.description="Portside prediction server (python -m portside.components serve)"
ENV PORTSIDE_IMAGE=${IMAGE_NAME}:${VERSION}
EXPOSE 8080
# Ready: a champion is loaded and the feature store answers (the route KServe's probe uses).
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/v2/health/ready', timeout=4)"]
ENTRYPOINT ["python", "-m", "portside.components", "serve"]
CMD ["--host", "0.0.0.0", "--port", "8080"]
