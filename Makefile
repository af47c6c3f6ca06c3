# Portside. `make demo` and `make test` are all a fresh machine needs; both run `make setup`.
SHELL := /bin/bash
# uv from PATH; otherwise the copy `make setup` installs with pip, run through the interpreter
# (pip may put its script anywhere: a pyenv shim, ~/.local/bin, a venv).
UV ?= $(shell command -v uv 2>/dev/null || echo python3 -m uv)
PY := .venv/bin/python
# This Makefile and its folder, for a `make -f path/to/Makefile` run from elsewhere.
THIS_MAKEFILE := $(abspath $(firstword $(MAKEFILE_LIST)))
PROJECT_DIR := $(dir $(THIS_MAKEFILE))
PORTSIDE := .venv/bin/portside
DEMO_TRANSACTIONS ?= 200000
# TensorFlow's INFO lines (oneDNN, CPU features) drown the demo's own output.
export TF_CPP_MIN_LOG_LEVEL ?= 1

.PHONY: setup setup-tfx demo drift-demo test bench lint format clean requirements image serving-image tfx-image airflow

setup:  ## create/refresh the environments: .venv (Python 3.11, uv.lock), .venv-tfx (Python 3.10)
	@$(UV) --version >/dev/null 2>&1 || { echo "installing uv with pip"; \
		python3 -m pip install --quiet uv || python3 -m pip install --quiet --user uv; }
	$(UV) sync --frozen --all-extras --python 3.11 --quiet
	@mkdir -p data
	@$(MAKE) -f $(THIS_MAKEFILE) --no-print-directory setup-tfx

# The TFX environment (.venv-tfx, Python 3.10, deploy/tfx/uv.lock). Without a Python 3.10 it is
# not built, loudly: `portside run --tfx` then says so and the TFX tests are reported skipped.
setup-tfx:
	@if python=$$($(PROJECT_DIR)deploy/tfx/find_python.sh); then \
		UV_PROJECT_ENVIRONMENT="$(CURDIR)/.venv-tfx" $(UV) sync --frozen --project $(PROJECT_DIR)deploy/tfx \
			--python "$$python" --quiet; \
	else \
		echo "*** WARNING: no Python 3.10 found (python3.10, pyenv versions, \$$TFX_PYTHON):"; \
		echo "*** the TFX environment .venv-tfx is NOT built; TFX tests will be skipped. ***"; \
	fi

# Each command prints a few summary lines; `portside run --local --verbose` shows kfp.local's
# and the tasks' logs (always kept in the run folder's logs/).
demo: setup  ## generate data, feast apply, materialize, run the training pipeline locally, serve the champion
	$(PORTSIDE) data generate --transactions $(DEMO_TRANSACTIONS) --out data/sources
	$(PORTSIDE) features apply --repo feature_repo
	$(PORTSIDE) features materialize --incremental
	$(PORTSIDE) run --local
	$(PORTSIDE) serve --demo --user-id 1 2 3 --amount 250 --merchant-category electronics

drift-demo: setup  ## monitoring: data whose last 2 weeks drift, train before them, monitor, retrain (data/drift_demo/)
	$(PY) -m portside.pipelines.drift_demo

# One pytest worker per core; a test file stays on one worker (its module fixtures start once).
TEST_WORKERS ?= auto

test: setup  ## the whole test suite (what .ci/run calls)
	UV="$(UV)" .venv/bin/pytest -n $(TEST_WORKERS) --dist loadfile --durations=15

# Airflow standalone on loopback (pipelines/airflow_standalone.py): AIRFLOW_HOME data/airflow
# (SQLite, logs, admin password; reused by the next start), DAGs from dags/. Ctrl-C stops it all.
AIRFLOW_PORT ?= 8080
AIRFLOW_PARALLELISM ?= 2

airflow: setup  ## local Airflow UI with dags/ on http://127.0.0.1:$(AIRFLOW_PORT); prints where the admin password is
	$(PY) -m portside.pipelines.airflow_standalone --port $(AIRFLOW_PORT) --parallelism $(AIRFLOW_PARALLELISM)

bench: setup  ## benchmarks: print a table, write JSON under bench/results/
	$(PY) -m bench

lint: setup  ## ruff; the deploy files' checks (hadolint, shellcheck, workflow schema, manifests, secrets)
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	$(PY) deploy/check.py

format: setup
	.venv/bin/ruff check --fix .
	.venv/bin/ruff format .

clean:  ## remove generated data (the Feast registry, online store and sources)
	rm -rf data

# The TFX image's requirements: the lock of deploy/tfx without the project (its wheel comes in).
TFX_EXPORT := --no-dev --no-emit-project --no-emit-package portside --no-header --quiet
IMAGE_EXTRAS := --extra features --extra validate --extra train --extra registry --extra kfp --extra serve

requirements:  ## pinned requirements of the images: component (uv.lock, no Airflow), TFX (deploy/tfx/uv.lock)
	$(UV) export --frozen --no-dev --no-emit-project --no-header $(IMAGE_EXTRAS) \
		--output-file deploy/requirements/component.txt --quiet
	$(UV) export --frozen --project deploy/tfx $(TFX_EXPORT) --output-file deploy/requirements/tfx.txt

# Every image: tag = package version, labels = version and git commit.
IMAGE_ARGS = --build-arg VERSION=$$($(PY) -c 'from portside.components.image import package_version; print(package_version())') \
	--build-arg GIT_SHA=$$(git rev-parse HEAD 2>/dev/null || echo unknown)

image: requirements  ## build the component image (needs a Docker engine), tag = package version
	$(UV) build --wheel --out-dir dist
	docker build -f deploy/component.Dockerfile --target component $(IMAGE_ARGS) \
		-t $$($(PY) -c 'from portside.components.image import component_image; print(component_image())') .

serving-image: requirements  ## build the serving image (the component image, the server as entrypoint)
	$(UV) build --wheel --out-dir dist
	docker build -f deploy/component.Dockerfile --target serving $(IMAGE_ARGS) \
		-t $$($(PY) -c 'from portside.components.image import serving_image; print(serving_image())') .

tfx-image: requirements  ## build the TFX pipeline's image (needs a Docker engine), tag = package version
	$(UV) build --wheel --out-dir dist
	docker build -f deploy/tfx.Dockerfile $(IMAGE_ARGS) \
		-t $$($(PY) -c 'from portside.components.image import tfx_image; print(tfx_image())') .
