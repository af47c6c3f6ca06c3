"""Benchmark `tfx`: the standard TFX pipeline, the TFX pipeline with Portside's components and
the Portside KFP local pipeline, side by side on the same generated data.

Per size, in a fresh workspace (feature repo copy, `feast apply`), each pipeline runs three
times on its own empty roots: cold, cached (the cold run's model became the baseline/champion,
so the evaluation and push steps run again) and cached again (every step a cache hit where the
pipeline caches it):

- Portside KFP local: `portside run --local` (features -> validate -> train -> evaluate -> push);
- the standard TFX pipeline (bench/tfx_standard/pipeline.py, in .venv-tfx): CsvExampleGen over
  the training set Portside's features step wrote (as CSV, split by time at the boundaries
  Portside's train recorded: train / validation), StatisticsGen, SchemaGen, ExampleValidator,
  Transform, Trainer, Evaluator against the latest blessed model, Pusher; TFX's cache on;
- Portside TFX: `portside run --tfx` (features in the main environment, then TFX's
  StatisticsGen/SchemaGen/ExampleValidator beside Portside's validate, train, evaluate, push on
  LocalDagRunner; Portside's cache, TFX's off).

Measured per run: wall time of the whole command, peak RSS of its largest process and of its
process tree (common.run_process); per step: each pipeline's own record (pipeline_run.json,
ML Metadata executions). Quality: every pushed model scored on the same later window, the test
window Portside's train held out (neither pipeline trained or early-stopped on it), with the
same metric code (bench/tfx_standard/score.py, in .venv-tfx). The standard pipeline starts
from the joined training set, so its times hold no feature join; both Portside pipelines'
include the features step.

Targets (issue 11): Portside KFP local at most a third of the standard pipeline cold and at
most a tenth fully cached, with ROC AUC no lower; the TFX pipeline with Portside components no
slower than the standard one.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from bench.common import (
    AS_OF,
    BIN,
    LABEL,
    ROOT,
    SUITE,
    WORK,
    count,
    dataset,
    feature_workspace,
    gigabytes,
    run_process,
    seconds,
    table,
)
from bench.pipeline import run_record
from portside.pipelines.tfx_commands import tfx_python

NAME = "tfx"
SIZES = ({"transactions": 50_000}, {"transactions": 1_000_000})
QUICK_SIZES = ({"transactions": 20_000, "users": 400},)
RUNS = ("cold", "cached", "cached again")
KFP, STANDARD, PORTSIDE_TFX = "Portside KFP local", "standard TFX", "Portside TFX"
COLD_SHARE_MAX = 1 / 3  # KFP local cold at most this share of the standard pipeline's
CACHED_SHARE_MAX = 1 / 10  # ... and fully cached
DROPPED_COLUMNS = ("transaction_id", "user_id", "event_timestamp")  # keys and time: no features
FEATURES_LINE = re.compile(r"^features: \w+ in ([0-9.]+) s", re.MULTILINE)
TFX_TIMEOUT_S = 3600


def run(quick: bool = False) -> dict[str, Any]:
    tfx_python()  # the TFX environment must exist: says how to build it otherwise
    work = WORK / NAME
    shutil.rmtree(work, ignore_errors=True)
    cases: list[dict[str, Any]] = []
    quality: list[dict[str, Any]] = []
    for config in QUICK_SIZES if quick else SIZES:
        n = config["transactions"]
        sources, _ = dataset(**config)
        root = work / str(n)
        repo = feature_workspace(root / "workspace", sources)
        workspace = repo.parent  # `portside run --tfx` finds feature_repo/ here
        entity_rows = sources / "transactions.parquet"
        kfp_runs = _run_three(
            KFP,
            n,
            _portside_command("--local", entity_rows, root / "kfp", f"feature_repo={repo}"),
            workspace,
        )
        cases += kfp_runs
        run_dir = Path(kfp_runs[0].get("run_dir") or "")
        training_set = run_dir / "features" / "training_set" / "training_set.parquet"
        split = run_dir / "train" / "model" / "split.json"
        if not (training_set.is_file() and split.is_file()):
            raise SystemExit(f"the cold KFP local run left no training set or split ({run_dir})")
        csv = _export_csv(training_set, split, root / "standard" / "csv")
        standard = root / "standard"
        cases += _run_three(STANDARD, n, _standard_command(csv, standard), ROOT)
        portside_tfx = root / "portside_tfx"
        cases += _run_three(
            PORTSIDE_TFX, n, _portside_command("--tfx", entity_rows, portside_tfx), workspace
        )
        quality.append(
            {"transactions": n, **_score(training_set, split, run_dir, standard, portside_tfx)}
        )

    verdicts = _verdicts(cases, quality)
    tables = [_summary_table(cases), _steps_table(cases), _quality_table(quality, verdicts)]
    for text in tables:
        print(text, flush=True)
    return {
        "sizes": [dict(c) for c in (QUICK_SIZES if quick else SIZES)],
        "cases": cases,
        "quality": quality,
        "targets": verdicts,
        "tables": tables,
        "failed": sum(c["returncode"] != 0 for c in cases) + sum("error" in q for q in quality),
    }


# --- the three pipelines --------------------------------------------------------------------


def _portside_command(mode: str, entity_rows: Path, root: Path, *settings: str) -> list[str]:
    """`portside run --local|--tfx` with the benchmark's roots and settings (`--tfx` finds the
    feature repo in its working directory; `--local` takes it as a setting)."""
    settings = (f"expectation_suite={SUITE}", f"as_of={AS_OF}",
                f"tracking_uri={root / 'mlflow.db'}", *settings)  # fmt: skip
    command = [str(BIN / "portside"), "run", mode, "--entity-rows", str(entity_rows)]
    command += ["--pipeline-root", str(root / "runs"), "--cache-dir", str(root / "cache")]
    for setting in settings:
        command += ["--param", setting]
    return command


def _standard_command(csv: dict[str, Any], root: Path) -> list[str]:
    return [
        str(tfx_python()), "-m", "bench.tfx_standard.pipeline", "--data", csv["folder"],
        "--root", str(root / "root"), "--metadata", str(root / "metadata.sqlite"),
        "--serving-dir", str(root / "serving"), "--label", LABEL,
        "--train-rows", str(csv["rows"]["train"]), "--eval-rows", str(csv["rows"]["eval"]),
    ]  # fmt: skip


def _run_three(pipeline: str, n: int, command: list[str], cwd: Path) -> list[dict[str, Any]]:
    """Cold, cached, cached again: the same command three times on the same roots."""
    out = []
    for kind in RUNS:
        label = f"{NAME}-{n}-{pipeline.lower().replace(' ', '_')}-{kind.replace(' ', '_')}"
        done = run_process(command, label, cwd=cwd, timeout=TFX_TIMEOUT_S)
        case = {"pipeline": pipeline, "transactions": n, "run": kind, **done}
        case |= _steps(pipeline, case, command)
        out.append(case)
    return out


def _steps(pipeline: str, case: dict[str, Any], command: list[str]) -> dict[str, Any]:
    """Each step's status and seconds, from the pipeline's own record of this run."""
    if case["started_at"] is None:
        return {}
    if pipeline == KFP:
        root = Path(command[command.index("--pipeline-root") + 1])
        path = run_record(root, case["started_at"])
        if path is None:
            return {"steps_error": "no pipeline_run.json written by this run"}
        record = json.loads(path.read_text())
        steps = [
            {"component": t["component"], "state": t["status"], "seconds": t["seconds"]}
            for t in record["tasks"]
        ]
        return {"run_dir": record["run_dir"], "steps": steps}
    if pipeline == STANDARD:
        metadata = command[command.index("--metadata") + 1]
    else:
        metadata = str(
            Path(command[command.index("--pipeline-root") + 1]) / "tfx" / "metadata.sqlite"
        )
    done = subprocess.run(
        [str(tfx_python()), "-m", "bench.tfx_standard.steps", metadata, str(case["started_at"])],
        cwd=ROOT, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        return {"steps_error": done.stderr.strip().splitlines()[-1:]}
    steps = [s for s in json.loads(done.stdout) if s["component"] != "Resolver"]
    if pipeline == PORTSIDE_TFX:  # its features step runs in the main environment first
        match = FEATURES_LINE.search((ROOT / case["log"]).read_text())
        if match:
            steps.insert(0, {"component": "features", "state": "-", "seconds": float(match[1])})
    return {"steps": steps}


def _export_csv(training_set: Path, split: Path, folder: Path) -> dict[str, Any]:
    """The training set as the standard pipeline's CSV input: train/ and eval/ (the validation
    window), cut at the boundaries Portside's train recorded; the test window is left out."""
    import pandas as pd
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    boundaries = json.loads(split.read_text())
    table = pq.read_table(training_set)
    times = table[boundaries["timestamp_column"]]
    kind = times.type

    def at(name: str) -> pa.Scalar:
        return pa.scalar(pd.Timestamp(boundaries[name]), kind)

    parts = {
        "train": pc.less(times, at("validation_start")),
        "eval": pc.and_(
            pc.greater_equal(times, at("validation_start")), pc.less(times, at("test_start"))
        ),
    }
    keep = [c for c in table.column_names if c not in DROPPED_COLUMNS]
    rows = {}
    for name, mask in parts.items():
        part = table.filter(mask).select(keep)
        (folder / name).mkdir(parents=True, exist_ok=True)
        with (folder / name / "data.csv").open("wb") as handle:
            # CsvExampleGen keeps a quoted header's quotes in the feature names: write it plain.
            handle.write((",".join(part.column_names) + "\n").encode())
            options = pcsv.WriteOptions(include_header=False, quoting_style="none")
            pcsv.write_csv(part, handle, options)
        rows[name] = part.num_rows
    return {"folder": str(folder), "rows": rows}


def _score(
    training_set: Path, split: Path, kfp_run: Path, standard: Path, portside_tfx: Path
) -> dict[str, Any]:
    """ROC AUC of each pipeline's model on the test window (bench/tfx_standard/score.py)."""
    pushed = sorted((standard / "serving").glob("*/saved_model.pb"))
    schemas = sorted((standard / "root" / "SchemaGen" / "schema").glob("*/schema.pbtxt"))
    tfx_models = sorted(
        (portside_tfx / "runs" / "tfx" / "artifacts" / "PortsideTrain" / "model").glob(
            "*/feature_spec.json"
        ),
        key=lambda p: int(p.parent.name),
    )
    if not (pushed and schemas and tfx_models):
        return {"error": "a pipeline left no model to score (see its log)"}
    output = standard.parent / "quality.json"
    command = [
        str(tfx_python()), "-m", "bench.tfx_standard.score", "--training-set", str(training_set),
        "--split", str(split), "--label", LABEL, "--standard", str(pushed[0].parent),
        "--schema", str(schemas[0]), "--portside", f"{KFP}={kfp_run / 'train' / 'model'}",
        "--portside", f"{PORTSIDE_TFX}={tfx_models[0].parent}", "--output", str(output),
    ]  # fmt: skip
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return {"error": "scoring failed: " + " ".join(done.stderr.strip().splitlines()[-1:])}
    scores = json.loads(output.read_text())
    return {"models": {STANDARD if k == "standard" else k: v for k, v in scores.items()}}


# --- targets and tables ---------------------------------------------------------------------


def auc_standard_error(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil (1982): the standard error of a ROC AUC on this many rows."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    variance = (
        auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)
    ) / (positives * negatives)
    return math.sqrt(max(variance, 0.0))


def _wall(cases: list[dict[str, Any]], pipeline: str, n: int, kind: str) -> float | None:
    case = next(
        (c for c in cases if (c["pipeline"], c["transactions"], c["run"]) == (pipeline, n, kind)),
        None,
    )
    return None if case is None or case["returncode"] != 0 else case["wall_s"]


def _share(cases: list[dict[str, Any]], pipeline: str, n: int, kind: str) -> float | None:
    """The pipeline's wall time as a share of the standard pipeline's, same size and run."""
    ours, theirs = _wall(cases, pipeline, n, kind), _wall(cases, STANDARD, n, kind)
    return None if ours is None or theirs is None else ours / theirs


def _verdicts(cases: list[dict[str, Any]], quality: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for q in quality:
        n, models = q["transactions"], q.get("models", {})
        auc_gain = None
        if KFP in models and STANDARD in models:
            auc_gain = models[KFP]["roc_auc"] - models[STANDARD]["roc_auc"]
        checks = (  # (what, value, limit): a share must stay at or below, a gain at or above
            ("KFP local cold / standard cold", _share(cases, KFP, n, "cold"), COLD_SHARE_MAX),
            (
                "KFP local cached / standard cached",
                _share(cases, KFP, n, "cached again"),
                CACHED_SHARE_MAX,
            ),
            ("Portside TFX cold / standard cold", _share(cases, PORTSIDE_TFX, n, "cold"), 1.0),
            ("KFP local ROC AUC - standard's", auc_gain, 0.0),
        )
        for what, value, limit in checks:
            if value is None:
                verdict = "failed (no measurement)"
            elif what.endswith("'s"):
                verdict = "pass" if value >= limit else f"MISS: {value:+.4f} < 0"
            else:
                verdict = "pass" if value <= limit else f"MISS: {value:.2f} > {limit:.2f}"
            out.append(
                {"transactions": n, "check": what, "value": value, "limit": limit,
                 "verdict": verdict}
            )  # fmt: skip
    return out


def _summary_table(cases: list[dict[str, Any]]) -> str:
    rows = [
        [count(c["transactions"]), c["pipeline"], c["run"],
         seconds(c["wall_s"]) if c["returncode"] == 0 else "failed",
         gigabytes(c["peak_rss_gb"]), gigabytes(c["tree_peak_rss_gb"]), seconds(c["cpu_s"])]
        for c in cases
    ]  # fmt: skip
    headers = ["transactions", "pipeline", "run", "wall s", "peak GB", "tree GB", "cpu s"]
    return table("tfx: whole pipeline, side by side", headers, rows)


def _step_text(step: dict[str, Any]) -> str:
    ran = step["state"] in ("COMPLETE", "succeeded", "-")
    return f"{step['component']} {step['seconds']:.1f}" + ("" if ran else f" {step['state']}")


def _steps_table(cases: list[dict[str, Any]]) -> str:
    rows = [
        [count(c["transactions"]), c["pipeline"], c["run"],
         ", ".join(_step_text(s) for s in c.get("steps") or []) or "-"]
        for c in cases
        if c["run"] != "cached again"
    ]  # fmt: skip
    headers = ["transactions", "pipeline", "run", "steps (seconds; state when not run)"]
    return table("tfx: per step", headers, rows)


def _quality_table(quality: list[dict[str, Any]], verdicts: list[dict[str, Any]]) -> str:
    rows = []
    for q in quality:
        size = count(q["transactions"])
        for pipeline, m in (q.get("models") or {}).items():
            se = auc_standard_error(m["roc_auc"], m["positives"], m["rows"] - m["positives"])
            rows.append(
                [size, pipeline, f"{m['roc_auc']:.4f}", f"{se:.4f}", f"{m['pr_auc']:.4f}",
                 count(m["rows"]), count(m["positives"])]
            )  # fmt: skip
        if "error" in q:
            rows.append([size, q["error"], "-", "-", "-", "-", "-"])
    headers = ["transactions", "model", "ROC AUC", "AUC s.e.", "PR AUC", "test rows", "frauds"]
    targets = [
        [count(v["transactions"]), v["check"],
         "-" if v["value"] is None else f"{v['value']:.3f}", f"{v['limit']:.3f}", v["verdict"]]
        for v in verdicts
    ]  # fmt: skip
    return "\n\n".join(
        [
            table("tfx: quality on the same later window", headers, rows),
            table("tfx: targets", ["transactions", "check", "value", "limit", "verdict"], targets),
        ]
    )
