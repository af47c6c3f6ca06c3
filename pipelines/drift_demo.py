"""`make drift-demo`: the monitoring loop end to end, in its own workspace (data/drift_demo/).

1. data whose last DRIFT_DAYS days drift (`portside data generate --drift-days`), `feast apply`;
2. train the champion on the rows from the data's second month (the 30-day aggregates have
   filled up) to QUIET_DAYS before the drift (`portside run --local --param rows_from=...
   --param rows_until=...`);
3. monitor the quiet days after training (ok) and the drifted days (drift, with the features
   that moved), against that run's validate output (`portside monitor`);
4. retrain up to the end, as the `drift_detected` event makes `training_pipeline` do: here the
   validation gate stops it (the new merchant category is not in the suite's allowed set: a
   reviewed suite change, not an automatic one), and the champion keeps serving; where the
   suite allows the new data, evaluate judges the new model against the champion and push
   moves the champion only if it is blessed.

Every step is the CLI a user would type, run in the workspace; nothing here is a second copy of
their logic. `python -m portside.pipelines.drift_demo [--transactions N]`.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

from portside.pipelines.times import today_utc

REPOSITORY = Path(__file__).resolve().parent.parent
WORKSPACE = REPOSITORY / "data" / "drift_demo"
DRIFT_DAYS = 14
QUIET_DAYS = 7
DATA_DAYS = 90  # `portside data generate`'s default window
WARM_UP_DAYS = 30  # the 30-day aggregates fill up during the data's first month: not trained on
ENTITY_ROWS = "data/sources/transactions.parquet"


def _portside(*args: str, check: bool = True) -> int:
    command = [str(Path(sys.executable).parent / "portside"), *args]
    print(f"\n$ portside {' '.join(args)}", flush=True)
    done = subprocess.run(command, cwd=WORKSPACE)
    if check and done.returncode != 0:
        raise SystemExit(f"drift demo: `portside {' '.join(args)}` failed (exit {done.returncode})")
    return done.returncode


def _stopped_at_validate() -> bool:
    """Whether the latest pipeline run failed at its validation gate."""
    records = (WORKSPACE / "data" / "pipeline_runs").glob("*/pipeline_run.json")
    latest = json.loads(max(records, key=lambda path: path.stat().st_mtime).read_text())
    failed = [t["component"] for t in latest["tasks"] if t["status"] == "gate_failed"]
    return failed == ["validate"]


def _latest_validation() -> Path:
    runs = list((WORKSPACE / "data" / "pipeline_runs").glob("*/validate/validation"))
    if not runs:
        raise SystemExit("drift demo: the training run left no validate output")
    return max(runs, key=lambda path: path.stat().st_mtime)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m portside.pipelines.drift_demo", description=__doc__
    )
    parser.add_argument("--transactions", type=int, default=100_000)
    args = parser.parse_args(argv)

    end = today_utc()
    drift_start = end - timedelta(days=DRIFT_DAYS)
    trained_until = drift_start - timedelta(days=QUIET_DAYS)
    trained_from = end - timedelta(days=DATA_DAYS - WARM_UP_DAYS)
    shutil.rmtree(WORKSPACE, ignore_errors=True)
    WORKSPACE.mkdir(parents=True)
    shutil.copytree(
        REPOSITORY / "feature_repo",
        WORKSPACE / "feature_repo",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    print(
        f"drift demo in {WORKSPACE}: drift from {drift_start:%Y-%m-%d}, data until {end:%Y-%m-%d}"
    )
    _portside("data", "generate", "--transactions", str(args.transactions), "--end",
              end.isoformat(), "--days", str(DATA_DAYS), "--drift-days", str(DRIFT_DAYS),
              "--quiet")  # fmt: skip
    _portside("features", "apply", "--repo", "feature_repo")
    _portside("run", "--local", "--entity-rows", ENTITY_ROWS,
              "--param", f"rows_from={trained_from.isoformat()}",
              "--param", f"rows_until={trained_until.isoformat()}",
              "--param", f"as_of={trained_until.isoformat()}")  # fmt: skip
    baseline = str(_latest_validation().relative_to(WORKSPACE))
    _portside("monitor", "--baseline", baseline, "--entity-rows", ENTITY_ROWS,
              "--from", trained_until.isoformat(), "--until", drift_start.isoformat(),
              "--out", "data/monitoring/quiet")  # fmt: skip
    _portside("monitor", "--baseline", baseline, "--entity-rows", ENTITY_ROWS,
              "--from", drift_start.isoformat(), "--until", end.isoformat(),
              "--out", "data/monitoring/drifted")  # fmt: skip
    # What the drift_detected event makes training_pipeline do: train on the recent data and
    # let evaluate and push decide against the champion.
    retrained = _portside("run", "--local", "--entity-rows", ENTITY_ROWS,
                          "--param", f"rows_from={trained_from.isoformat()}",
                          "--param", f"as_of={end.isoformat()}", check=False)  # fmt: skip
    if retrained != 0 and not _stopped_at_validate():
        raise SystemExit("drift demo: the retraining run failed (see its report above)")
    if retrained != 0:
        print(
            "\nThe retraining stopped at the validation gate, as it should: the new merchant "
            "category is not in the suite's allowed set. Accepting it is a reviewed change to "
            "the suite (feature_repo/expectations/, see README: The validation suite); the "
            "champion keeps serving meanwhile."
        )
    print(
        f"\nreports: {WORKSPACE}/data/monitoring/{{quiet,drifted}}/monitoring/report.html"
        f"\nAirflow runs the same loop daily: dags/model_monitoring.py"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
