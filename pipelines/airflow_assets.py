"""The Airflow Assets Portside's DAGs emit and listen to, defined once.

- FEATURES_FRESH: the online store holds what landed up to a materialization run's interval
  end (emitted by `feature_materialization`).
- DRIFT_DETECTED: recent data or served requests drifted from the training baseline (emitted
  by the monitoring job; any producer works: a task with `outlets=[DRIFT_DETECTED]`, or
  `POST /api/v2/assets/events` from outside Airflow).

`training_pipeline` runs daily or when either event arrives. The `x-` URI scheme is the one
Airflow leaves to users (no provider normalizes it, so defining these costs nothing at parse).
"""

from __future__ import annotations

from airflow.sdk import Asset

FEATURES_FRESH = Asset(name="features_fresh", uri="x-portside://features/fresh", group="portside")
DRIFT_DETECTED = Asset(name="drift_detected", uri="x-portside://monitoring/drift", group="portside")
