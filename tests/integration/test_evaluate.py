"""The `evaluate` component with real TensorFlow models (the train component) and a real MLflow
registry in a SQLite file: first run, champion comparison, gates, metrics and plots.

One MLflow database serves the module (creating one costs seconds); each test uses its own
registered model name, so each starts without a champion.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import LABEL, copy_training_set, write_validation_summary

from portside.components.common import model_io
from portside.components.common.splits import time_split
from portside.components.errors import GateFailed
from portside.components.evaluate.run import run as evaluate
from portside.components.push.registry import Registry
from portside.components.push.run import run as push

pytestmark = pytest.mark.integration

EPOCHS = 3


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return tmp_path_factory.mktemp("mlflow") / "mlflow.db"


@pytest.fixture(scope="module")
def passed(tmp_path_factory):
    return write_validation_summary(tmp_path_factory.mktemp("validation"), passed=True)


def _train(training_set: Path, validation: Path, out: Path, db: Path) -> Path:
    from portside.components.train.run import run as train

    train(str(training_set), str(validation), str(out), epochs=EPOCHS, tracking_uri=str(db))
    return out


@pytest.fixture(scope="module")
def good_model(training_set, passed, db, tmp_path_factory):
    return _train(training_set, passed, tmp_path_factory.mktemp("good") / "model", db)


@pytest.fixture(scope="module")
def bad_model(training_set, passed, db, tmp_path_factory):
    """Trained on shuffled labels: it has learned nothing about fraud."""
    root = tmp_path_factory.mktemp("bad")
    frame = pd.read_parquet(training_set / "training_set.parquet")
    frame[LABEL] = np.random.default_rng(3).permutation(frame[LABEL].to_numpy())
    copy_training_set(training_set, root / "shuffled", frame)
    return _train(root / "shuffled", passed, root / "model", db)


def _evaluate(model, training_set, validation, out, db, name, **params):
    return evaluate(
        str(model),
        str(training_set),
        str(validation),
        str(out),
        model_name=name,
        tracking_uri=str(db),
        **params,
    )


def _push(model, evaluation, out, db, name):
    return push(str(model), str(evaluation), str(out), model_name=name, tracking_uri=str(db))


def _registry_state(db, name):
    registry = Registry(str(db), name)
    versions = [(v.version, dict(v.tags)) for v in registry.versions()]
    return versions, registry.aliases(), registry.history()


def test_good_model_is_blessed_on_first_run(good_model, training_set, passed, db, tmp_path):
    result = _evaluate(good_model, training_set, passed, tmp_path / "eval", db, "first")
    blessing = json.loads((tmp_path / "eval" / "blessing.json").read_text())
    assert result.blessed and blessing["blessed"] is True
    assert blessing["first_run"] is True and blessing["champion"] is None
    assert blessing["reasons"] == result.reasons and len(result.reasons) == 4
    assert all(line.startswith("PASS") for line in result.reasons)
    assert "first run" in result.reasons[2] and "no 'champion' alias" in result.reasons[2]


def test_metrics_and_plots_agree_with_the_predictions(
    good_model, training_set, passed, db, tmp_path
):
    from mlflow.tracking import MlflowClient

    out = tmp_path / "eval"
    result = _evaluate(good_model, training_set, passed, out, db, "metrics")
    for plot in ("roc.png", "pr.png", "calibration.png"):
        assert (out / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plot
    metrics = json.loads((out / "metrics.json").read_text())
    model = metrics["model"]

    frame = pd.read_parquet(training_set / "training_set.parquet")
    test = time_split(frame, "event_timestamp", 0.15, 0.15).test
    labels = test[LABEL].to_numpy()
    scores = model_io.predict(good_model, test)
    assert metrics["test_window"]["rows"] == len(test)
    assert metrics["test_window"]["positives"] == int(labels.sum())
    # ROC AUC by the rank (Mann-Whitney) formula, ties sharing their average rank
    ranks = pd.Series(scores).rank(method="average").to_numpy()
    n_pos, n_neg = labels.sum(), len(labels) - labels.sum()
    auc = (ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    assert model["roc_auc"] == pytest.approx(auc, abs=1e-9)
    p = np.clip(scores.astype(float), 1e-7, 1 - 1e-7)
    log_loss = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    assert model["log_loss"] == pytest.approx(log_loss, rel=1e-9)
    # the reported threshold really keeps the false-positive rate within 1%
    flagged = scores >= model["threshold_at_1pct_fpr"]
    assert flagged[labels == 0].mean() <= 0.01
    assert flagged[labels == 1].mean() == pytest.approx(model["recall_at_1pct_fpr"])
    assert sum(b["rows"] for b in model["reliability"]) == len(test)
    assert 0 <= model["expected_calibration_error"] < 0.1
    assert 0 < model["pr_auc"] < 1

    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.get_run(result.mlflow_run_id)
    assert run.data.metrics["roc_auc"] == pytest.approx(auc, abs=1e-9)
    assert run.data.metrics["blessed"] == 1.0
    logged = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"blessing.json", "metrics.json", "roc.png", "pr.png", "calibration.png"} <= logged


def test_bad_model_is_not_blessed_and_push_refuses(bad_model, training_set, passed, db, tmp_path):
    result = _evaluate(bad_model, training_set, passed, tmp_path / "eval", db, "bad")
    assert not result.blessed
    assert result.reasons[0].startswith("FAIL roc_auc")
    with pytest.raises(GateFailed, match=r"not blessed: FAIL roc_auc"):
        _push(bad_model, tmp_path / "eval", tmp_path / "pushed", db, "bad")
    assert _registry_state(db, "bad") == ([], {}, [])
    assert not (tmp_path / "pushed").exists()


def test_against_a_champion(good_model, bad_model, training_set, passed, db, tmp_path):
    first = _evaluate(good_model, training_set, passed, tmp_path / "e1", db, "vs")
    pushed = _push(good_model, tmp_path / "e1", tmp_path / "p1", db, "vs")
    assert first.first_run and pushed.version == "1"

    # the same model again: scored against the champion on the same window, not worse
    again = _evaluate(good_model, training_set, passed, tmp_path / "e2", db, "vs")
    assert again.blessed and not again.first_run
    assert again.champion == {
        "version": "1",
        "content_hash": first.model_content_hash,
        "roc_auc": pytest.approx(first.metrics["roc_auc"]),
    }
    assert again.reasons[2].startswith("PASS") and "vs champion v1" in again.reasons[2]

    # absolute thresholds lowered so that only the champion comparison can say no
    worse = _evaluate(
        bad_model, training_set, passed, tmp_path / "e3", db, "vs", min_roc_auc=0, min_pr_auc=0
    )
    assert not worse.blessed
    assert [line[:4] for line in worse.reasons] == ["PASS", "PASS", "FAIL", "PASS"]
    assert "vs champion v1" in worse.reasons[2] and "max_regression" in worse.reasons[2]
    before = _registry_state(db, "vs")
    with pytest.raises(GateFailed, match="vs champion v1"):
        _push(bad_model, tmp_path / "e3", tmp_path / "p3", db, "vs")
    assert _registry_state(db, "vs") == before


def test_validation_gate_must_have_passed(good_model, training_set, db, tmp_path):
    for case, passed in (("failed", False), ("missing", None)):
        validation = write_validation_summary(tmp_path / case, passed)
        out = tmp_path / f"eval-{case}"
        result = _evaluate(good_model, training_set, validation, out, db, "gate")
        assert not result.blessed
        assert result.reasons[3].startswith("FAIL validation gate"), result.reasons[3]
        assert all(line.startswith("PASS") for line in result.reasons[:3])


def test_push_refuses_when_the_champion_moved_since_evaluation(
    good_model, training_set, passed, db, tmp_path
):
    """Two runs judged against v1; the first to push wins, the second moves nothing."""
    first = _evaluate(good_model, training_set, passed, tmp_path / "e1", db, "cas")
    _push(good_model, tmp_path / "e1", tmp_path / "p1", db, "cas")
    candidates = []
    for tag in ("a", "b"):  # new content each (one extra file), the same predictions
        candidate = tmp_path / f"model-{tag}"
        shutil.copytree(good_model, candidate)
        (candidate / "variant.txt").write_text(tag)
        _evaluate(candidate, training_set, passed, tmp_path / f"e-{tag}", db, "cas")
        candidates.append(candidate)
    blessing = json.loads((tmp_path / "e-a" / "blessing.json").read_text())
    assert blessing["registry"] == {"kind": "mlflow", "uri": f"sqlite:///{db}", "model_name": "cas"}
    assert blessing["champion"]["version"] == "1"
    assert blessing["champion"]["content_hash"] == first.model_content_hash

    assert _push(candidates[0], tmp_path / "e-a", tmp_path / "pa", db, "cas").version == "2"
    before = _registry_state(db, "cas")
    message = "champion changed since evaluation: evaluated against v1, the champion is now v2"
    with pytest.raises(GateFailed, match=f"{message}; nothing moved"):
        _push(candidates[1], tmp_path / "e-b", tmp_path / "pb", db, "cas")
    assert _registry_state(db, "cas") == before
    assert before[1:] == ({"champion": "2"}, ["1", "2"])
