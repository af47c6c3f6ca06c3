#!/usr/bin/env bash
# The daily training run on Vertex AI Pipelines: a PipelineJobSchedule created by
# `portside schedule` from the production profile (project, region, pipeline root, service
# account, network, key). Run it once per release; delete the previous schedule in the console
# or with `gcloud ai schedules delete`.
#
#   ENTITY_ROWS_URI=gs://BUCKET/sources/transactions.parquet deploy/vertex/schedule.sh
set -euo pipefail

: "${ENTITY_ROWS_URI:?set ENTITY_ROWS_URI, the labelled entity rows (gs://...parquet)}"
PROFILE="${PROFILE:-deploy/profiles/production.yaml}"
CRON="${CRON:-TZ=UTC 0 3 * * *}"  # daily at 03:00 UTC, after the night's materialization

exec portside schedule --profile "$PROFILE" \
  --entity-rows "$ENTITY_ROWS_URI" \
  --cron "$CRON" \
  --max-concurrent-runs 1 \
  --display-name portside-training
