#!/usr/bin/env bash
# One-time setup of a GCP project for Portside on Vertex AI Pipelines (deploy/vertex/README.md):
# APIs, buckets, Artifact Registry repositories, three service accounts with least-privilege
# roles, and Workload Identity Federation for GitHub Actions. Idempotent: safe to run again.
#
#   PROJECT=my-project REGION=europe-west4 GITHUB_REPO=my-org/portside deploy/vertex/setup.sh
set -euo pipefail

: "${PROJECT:?set PROJECT}"
: "${REGION:?set REGION, e.g. europe-west4}"
: "${GITHUB_REPO:?set GITHUB_REPO, e.g. my-org/portside}"
PIPELINE_BUCKET="${PIPELINE_BUCKET:-${PROJECT}-portside-pipelines}"
FEATURE_BUCKET="${FEATURE_BUCKET:-${PROJECT}-portside-features}"
IMAGES_REPO="${IMAGES_REPO:-portside}"
KFP_REPO="${KFP_REPO:-portside-pipelines}"
POOL="${POOL:-github}"

TRAINER="portside-trainer@${PROJECT}.iam.gserviceaccount.com"
AIRFLOW="portside-airflow@${PROJECT}.iam.gserviceaccount.com"
CI="portside-ci@${PROJECT}.iam.gserviceaccount.com"
RELEASE="portside-release@${PROJECT}.iam.gserviceaccount.com"

gcloud config set project "$PROJECT"
gcloud services enable aiplatform.googleapis.com artifactregistry.googleapis.com \
  storage.googleapis.com iamcredentials.googleapis.com sts.googleapis.com

# Buckets: the pipeline root (run artifacts, Portside's cache) and the offline feature sources.
for bucket in "$PIPELINE_BUCKET" "$FEATURE_BUCKET"; do
  gcloud storage buckets describe "gs://$bucket" >/dev/null 2>&1 \
    || gcloud storage buckets create "gs://$bucket" --location "$REGION" \
      --uniform-bucket-level-access --public-access-prevention
done

# Artifact Registry: the images (Docker) and the compiled pipelines (KFP).
gcloud artifacts repositories describe "$IMAGES_REPO" --location us >/dev/null 2>&1 \
  || gcloud artifacts repositories create "$IMAGES_REPO" --location us --repository-format docker
gcloud artifacts repositories describe "$KFP_REPO" --location "$REGION" >/dev/null 2>&1 \
  || gcloud artifacts repositories create "$KFP_REPO" --location "$REGION" --repository-format kfp

for account in portside-trainer portside-airflow portside-ci portside-release; do
  gcloud iam service-accounts describe "${account}@${PROJECT}.iam.gserviceaccount.com" \
    >/dev/null 2>&1 || gcloud iam service-accounts create "$account" --display-name "$account"
done

bind_project() {  # member role
  gcloud projects add-iam-policy-binding "$PROJECT" --member "$1" --role "$2" \
    --condition None --quiet >/dev/null
}
bind_bucket() {  # bucket member role
  gcloud storage buckets add-iam-policy-binding "gs://$1" --member "$2" --role "$3" >/dev/null
}

# The trainer: what every pipeline job, CustomJob and schedule runs as.
bind_project "serviceAccount:$TRAINER" roles/aiplatform.user
bind_project "serviceAccount:$TRAINER" roles/logging.logWriter
bind_bucket "$PIPELINE_BUCKET" "serviceAccount:$TRAINER" roles/storage.objectUser
bind_bucket "$FEATURE_BUCKET" "serviceAccount:$TRAINER" roles/storage.objectViewer
gcloud artifacts repositories add-iam-policy-binding "$IMAGES_REPO" --location us \
  --member "serviceAccount:$TRAINER" --role roles/artifactregistry.reader >/dev/null

# Airflow's pods (deploy/airflow/): the vertex runner submits the pipeline as the trainer; the
# chart reads its keys from Secret Manager (the log bucket's binding: deploy/airflow/README.md).
bind_project "serviceAccount:$AIRFLOW" roles/aiplatform.user
bind_project "serviceAccount:$AIRFLOW" roles/secretmanager.secretAccessor
bind_bucket "$PIPELINE_BUCKET" "serviceAccount:$AIRFLOW" roles/storage.objectUser
gcloud iam service-accounts add-iam-policy-binding "$TRAINER" \
  --member "serviceAccount:$AIRFLOW" --role roles/iam.serviceAccountUser >/dev/null

# CI: pushes the images.
gcloud artifacts repositories add-iam-policy-binding "$IMAGES_REPO" --location us \
  --member "serviceAccount:$CI" --role roles/artifactregistry.writer >/dev/null

# Release: pushes the images, publishes the compiled pipeline, submits a run as the trainer.
gcloud artifacts repositories add-iam-policy-binding "$IMAGES_REPO" --location us \
  --member "serviceAccount:$RELEASE" --role roles/artifactregistry.writer >/dev/null
gcloud artifacts repositories add-iam-policy-binding "$KFP_REPO" --location "$REGION" \
  --member "serviceAccount:$RELEASE" --role roles/artifactregistry.writer >/dev/null
bind_project "serviceAccount:$RELEASE" roles/aiplatform.user
bind_bucket "$PIPELINE_BUCKET" "serviceAccount:$RELEASE" roles/storage.objectUser
gcloud iam service-accounts add-iam-policy-binding "$TRAINER" \
  --member "serviceAccount:$RELEASE" --role roles/iam.serviceAccountUser >/dev/null

# GitHub Actions signs in as portside-ci / portside-release through Workload Identity
# Federation (no key): only workflows of GITHUB_REPO; the release account only from tags.
NUMBER="$(gcloud projects describe "$PROJECT" --format 'value(projectNumber)')"
gcloud iam workload-identity-pools describe "$POOL" --location global >/dev/null 2>&1 \
  || gcloud iam workload-identity-pools create "$POOL" --location global
gcloud iam workload-identity-pools providers describe "$POOL" --location global \
  --workload-identity-pool "$POOL" >/dev/null 2>&1 \
  || gcloud iam workload-identity-pools providers create-oidc "$POOL" --location global \
    --workload-identity-pool "$POOL" --issuer-uri https://token.actions.githubusercontent.com \
    --attribute-mapping "google.subject=assertion.sub,attribute.repository=assertion.repository,attribute.ref=assertion.ref" \
    --attribute-condition "assertion.repository == '${GITHUB_REPO}'"
PRINCIPALS="principalSet://iam.googleapis.com/projects/${NUMBER}/locations/global/workloadIdentityPools/${POOL}"
gcloud iam service-accounts add-iam-policy-binding "$CI" --role roles/iam.workloadIdentityUser \
  --member "${PRINCIPALS}/attribute.repository/${GITHUB_REPO}" >/dev/null
gcloud iam service-accounts add-iam-policy-binding "$RELEASE" --role roles/iam.workloadIdentityUser \
  --member "${PRINCIPALS}/attribute.repository/${GITHUB_REPO}" \
  --condition "expression=attribute.ref.startsWith('refs/tags/v'),title=release-tags-only" >/dev/null

echo "GitHub repository variables:"
echo "  GCP_WORKLOAD_IDENTITY_PROVIDER=projects/${NUMBER}/locations/global/workloadIdentityPools/${POOL}/providers/${POOL}"
echo "  GCP_CI_SERVICE_ACCOUNT=${CI}"
echo "  GCP_RELEASE_SERVICE_ACCOUNT=${RELEASE}"
echo "  KFP_REPOSITORY=https://${REGION}-kfp.pkg.dev/${PROJECT}/${KFP_REPO}"
echo "Profile (deploy/profiles/production.yaml): vertex.project=${PROJECT} vertex.region=${REGION}"
echo "  vertex.pipeline_root=gs://${PIPELINE_BUCKET}/root vertex.service_account=${TRAINER}"
echo "  feast.sources=gs://${FEATURE_BUCKET}/sources"
