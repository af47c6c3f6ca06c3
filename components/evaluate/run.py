"""The `evaluate` component: metrics on the held-out test window, plots, and a blessing."""

from __future__ import annotations

import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from portside.components.common.artifacts import (
    BLESSING_FILE,
    CALIBRATION_PLOT_FILE,
    EVALUATION_METRICS_FILE,
    PR_PLOT_FILE,
    ROC_PLOT_FILE,
    SPLIT_FILE,
    read_labelled_training_set,
    validation_gate,
)
from portside.components.errors import InputDataError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from portside.components.common.model_io import FeatureSpec
    from portside.components.push.champion import ChampionRegistry

PASS, FAIL = "PASS", "FAIL"


@dataclass
class Evaluation:
    blessed: bool
    reasons: list[str]
    metrics: dict[str, Any]
    champion: dict[str, Any] | None
    first_run: bool
    model_content_hash: str
    evaluation_path: str
    mlflow_run_id: str
    seconds: float


def run(
    model: str,
    training_set: str,
    validation: str,
    evaluation: str,
    model_name: str,
    min_roc_auc: float = 0.75,
    min_pr_auc: float = 0.10,
    max_regression: float = 0.01,
    tracking_uri: str = "",
    registry: str = "mlflow",
    vertex_project: str = "",
    vertex_location: str = "us-central1",
    vertex_api_endpoint: str = "",
) -> Evaluation:
    """Score the model (and the champion) on the test window, write metrics, plots and
    blessing.json into `evaluation`, log them to MLflow, and return the verdict."""
    from portside.components.common.model_io import FeatureSpec, predict
    from portside.components.lineage import content_hash
    from portside.components.push.champion import identity, open_registry

    started = time.perf_counter()
    parameters = {
        "min_roc_auc": min_roc_auc,
        "min_pr_auc": min_pr_auc,
        "max_regression": max_regression,
        "model_name": model_name,
        "registry": registry,
    }
    spec = FeatureSpec.load(model)
    test = load_test_window(Path(training_set), Path(model), spec)
    labels = test[spec.label].to_numpy(dtype="int8")
    candidate = score(labels, predict(model, test))
    source = open_registry(
        registry, model_name, tracking_uri, vertex_project, vertex_location, vertex_api_endpoint
    )
    champion, champion_error = score_champion(source, test, labels)

    reasons = [
        _threshold("roc_auc", candidate["roc_auc"], min_roc_auc),
        _threshold("pr_auc", candidate["pr_auc"], min_pr_auc),
        _versus_champion(source, candidate, champion, champion_error, max_regression),
        _validation_gate(Path(validation)),
    ]
    digest = content_hash(model)
    blessing = {
        "blessed": all(reason.startswith(PASS) for reason in reasons),
        "reasons": reasons,
        # which champion this verdict holds against: push swaps only that one
        "registry": identity(source),
        "champion": _summary(champion),
        "first_run": champion is None and champion_error is None,
        "model_content_hash": digest,
    }
    metrics = {
        "test_window": _window(test, spec, labels),
        "model": _public(candidate),
        "champion": _public(champion) if champion else None,
        "inputs": {"model": str(Path(model).resolve()), "model_content_hash": digest},
        "parameters": parameters,
    }
    out = Path(evaluation)
    out.mkdir(parents=True, exist_ok=True)
    write_plots(out, candidate, champion)
    (out / EVALUATION_METRICS_FILE).write_text(json.dumps(metrics, indent=2))
    (out / BLESSING_FILE).write_text(json.dumps(blessing, indent=2))
    run_id = _log(tracking_uri, out, metrics, blessing)
    return Evaluation(
        blessed=blessing["blessed"],
        reasons=reasons,
        metrics={k: v for k, v in candidate.items() if isinstance(v, float)},
        champion=blessing["champion"],
        first_run=blessing["first_run"],
        model_content_hash=digest,
        evaluation_path=str(out.resolve()),
        mlflow_run_id=run_id,
        seconds=round(time.perf_counter() - started, 3),
    )


def load_test_window(training_set: Path, model: Path, spec: FeatureSpec) -> pd.DataFrame:
    """The test window of train's split: cut at the boundaries the model directory records,
    on the same training set (its row counts per part must match)."""
    from portside.components.common.splits import SplitBoundaries

    frame = read_labelled_training_set(training_set, spec.label)
    split = SplitBoundaries.load(model)
    parts = split.cut(frame)
    rows = {name: len(getattr(parts, name)) for name in split.rows}
    if rows != split.rows:
        raise InputDataError(
            f"{training_set}: not the training set the model was trained on (split rows "
            f"{rows}, train recorded {split.rows} in {model / SPLIT_FILE})"
        )
    test = parts.test
    if test[spec.label].nunique() < 2:
        raise InputDataError(
            f"{training_set}: the test window ({len(test)} rows) holds only one class of "
            f"{spec.label!r}; ROC and PR need both"
        )
    return test


def score(labels: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """Every metric of one model on the test window; `curve` is kept for the plots."""
    from portside.components.evaluate import metrics as m

    c = m.curve(labels, scores)
    recall, threshold = m.recall_at_fpr(c)
    bins = m.reliability(labels, scores)
    return {
        "roc_auc": m.roc_auc(c),
        "pr_auc": m.pr_auc(c),
        "log_loss": m.log_loss(labels, scores),
        "recall_at_1pct_fpr": recall,
        "threshold_at_1pct_fpr": threshold,
        "expected_calibration_error": m.expected_calibration_error(bins),
        "reliability": bins,
        "roc_curve": m.roc_points(c),
        "curve": c,
    }


def score_champion(
    registry: ChampionRegistry, test: pd.DataFrame, labels: np.ndarray
) -> tuple[dict[str, Any] | None, str | None]:
    """The champion's metrics on the same rows, or (None, why) when it cannot be scored.
    A registry that cannot be read raises: that is not "no champion"."""
    from portside.components.common.model_io import predict

    champion = registry.current_champion()
    if champion is None:
        return None, None
    with tempfile.TemporaryDirectory(prefix="portside-champion-") as scratch:
        try:
            scores = predict(registry.champion_files(champion, scratch), test)
        except Exception as error:  # a champion we cannot score must not be silently skipped
            return None, f"champion v{champion.version} could not be scored here: {error}"
    identity = {"version": champion.version, "content_hash": champion.content_hash}
    return {**identity, **score(labels, scores)}, None


def _threshold(name: str, value: float, minimum: float) -> str:
    verdict, op = (PASS, ">=") if value >= minimum else (FAIL, "<")
    return f"{verdict} {name} {value:.4f} {op} minimum {minimum:.4f}"


def _versus_champion(
    registry: ChampionRegistry,
    candidate: dict[str, Any],
    champion: dict[str, Any] | None,
    champion_error: str | None,
    max_regression: float,
) -> str:
    if champion_error is not None:
        return f"{FAIL} {champion_error}"
    if champion is None:
        return (
            f"{PASS} first run: registered model {registry.name!r} has no 'champion' alias in "
            f"{registry.uri}; nothing to compare against"
        )
    drop = champion["roc_auc"] - candidate["roc_auc"]
    verdict, op = (PASS, "<=") if drop <= max_regression else (FAIL, ">")
    return (
        f"{verdict} roc_auc {candidate['roc_auc']:.4f} vs champion v{champion['version']} "
        f"{champion['roc_auc']:.4f} on the same test window: drop {drop:.4f} {op} "
        f"max_regression {max_regression:.4f}"
    )


def _validation_gate(validation: Path) -> str:
    # A blessing records every check: an unreadable summary is a failed check, not a crash.
    try:
        verdict = validation_gate(validation)
    except InputDataError as error:
        return f"{FAIL} validation gate: {error}"
    return f"{PASS if verdict.passed else FAIL} {verdict.reason}"


def _window(test: pd.DataFrame, spec: FeatureSpec, labels: np.ndarray) -> dict[str, Any]:
    times = test[spec.timestamp]
    return {
        "start": str(times.min()),
        "end": str(times.max()),
        "rows": len(test),
        "positives": int(labels.sum()),
    }


def _summary(champion: dict[str, Any] | None) -> dict[str, Any] | None:
    if champion is None:
        return None
    return {k: champion[k] for k in ("version", "content_hash", "roc_auc")}


def _public(scored: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in scored.items() if k != "curve"}


def write_plots(out: Path, candidate: dict[str, Any], champion: dict[str, Any] | None) -> None:
    from portside.components.evaluate.plots import calibration_plot, pr_plot, roc_plot

    scored = {"candidate": candidate}
    if champion:
        scored[f"champion v{champion['version']}"] = champion
    curves = {label: s["curve"] for label, s in scored.items()}
    roc_plot(curves, {label: s["roc_auc"] for label, s in scored.items()}, out / ROC_PLOT_FILE)
    pr_plot(curves, {label: s["pr_auc"] for label, s in scored.items()}, out / PR_PLOT_FILE)
    calibration_plot(
        candidate["reliability"],
        candidate["expected_calibration_error"],
        out / CALIBRATION_PLOT_FILE,
    )


def _log(tracking_uri: str, out: Path, metrics: dict[str, Any], blessing: dict[str, Any]) -> str:
    from portside.components.common.tracking import log_run

    model, champion = metrics["model"], metrics["champion"]
    values = {k: v for k, v in model.items() if isinstance(v, float)}
    values["blessed"] = float(blessing["blessed"])
    if champion:
        values["champion_roc_auc"] = champion["roc_auc"]
    return log_run(
        tracking_uri,
        run_name="evaluate",
        params={**metrics["parameters"], "test_rows": metrics["test_window"]["rows"]},
        metrics=values,
        artifact_dir=out,
        tags={
            "portside.component": "evaluate",
            "portside.model_content_hash": blessing["model_content_hash"],
            "portside.blessed": str(blessing["blessed"]).lower(),
        },
    )
