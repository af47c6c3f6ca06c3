"""`portside expectations propose`: the committed suite is what the command proposes from the
reference training sets (rebuilt here with the real generator, Feast and the features
component), and clean training sets of other seeds and sizes pass it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import BIN, DATA_END, EXAMPLE, ROOT, FeatureWorkspace, make_workspace, run_cli
from corruptions import scaled, write_training_set

from portside.components.errors import ConfigurationError, InputDataError
from portside.components.validate.propose import ProposalSettings, is_proposed, propose
from portside.components.validate.run import read_training_set
from portside.components.validate.run import run as validate
from portside.pipelines.cli import main as portside

pytestmark = pytest.mark.integration

SUITE = ROOT / "feature_repo" / "expectations" / "fraud_model_v1.json"


@dataclass(frozen=True)
class DataConfig:
    """`portside data generate --transactions T [--users U] --seed S --end 2026-11-01`."""

    transactions: int
    seed: int
    users: int | None = None


# The references the committed suite was proposed from (README, "The validation suite"): the
# tests' configuration (50 transactions per user) and the demo's (100 per user, the default).
REFERENCES = (DataConfig(20_000, seed=11, users=400), DataConfig(40_000, seed=7))
# Not references: other seeds, and other sizes of both configurations.
CLEAN = (
    DataConfig(20_000, seed=1, users=400),
    DataConfig(20_000, seed=2, users=400),
    DataConfig(20_000, seed=3, users=400),
    DataConfig(60_000, seed=5, users=1_200),
    DataConfig(100_000, seed=3),
)


class TrainingSets:
    """Training sets built by the features component over freshly generated sources, in one
    applied Feast repo (the sources are regenerated in place; the registry stays valid)."""

    def __init__(self, workspace: FeatureWorkspace, root: Path) -> None:
        self.workspace, self.root = workspace, root

    def build(self, config: DataConfig) -> Path:
        from portside.components.features.run import run as build_training_set
        from portside.synthetic_data import SyntheticDataConfig, generate

        out = self.root / f"t{config.transactions}-u{config.users}-s{config.seed}"
        if not out.exists():
            data = SyntheticDataConfig(
                transactions=config.transactions, users=config.users, end=DATA_END, seed=config.seed
            )
            generate(data, self.workspace.sources, progress=False)
            entity_rows = str(self.workspace.sources / "transactions.parquet")
            build_training_set(
                entity_rows=entity_rows,
                training_set=str(out),
                feature_repo=str(self.workspace.repo),
                **EXAMPLE,
            )
        return out


@pytest.fixture(scope="module")
def training_sets(tmp_path_factory: pytest.TempPathFactory) -> TrainingSets:
    workspace = make_workspace(tmp_path_factory.mktemp("expectations"))
    run_cli([str(BIN / "feast"), "apply"], cwd=workspace.repo)
    return TrainingSets(workspace, tmp_path_factory.mktemp("training_sets"))


@pytest.fixture(scope="module")
def references(training_sets: TrainingSets) -> list[Path]:
    return [training_sets.build(config) for config in REFERENCES]


def _propose_args(references: list[Path], suite: Path, *rest: str) -> list[str]:
    paths = [str(p) for p in references]
    return ["expectations", "propose", "--training-set", *paths, "--suite", str(suite), *rest]


def _hand_written_only(tmp_path: Path) -> Path:
    suite = json.loads(SUITE.read_text())
    suite["expectations"] = [e for e in suite["expectations"] if not is_proposed(e)]
    del suite["meta"]["proposal"]
    path = tmp_path / "hand_written.json"
    path.write_text(json.dumps(suite))
    return path


def test_committed_suite_is_what_propose_writes(references, tmp_path, capsys):
    """From the hand-written part alone, and again from the committed file itself."""
    for start in (_hand_written_only(tmp_path), SUITE):
        out = tmp_path / f"proposed_from_{start.stem}.json"
        assert portside(_propose_args(references, start, "--out", str(out))) == 0
        assert out.read_text() == SUITE.read_text(), (
            "re-run `portside expectations propose` (README) and review the change"
        )
    assert portside(_propose_args(references, SUITE, "--check")) == 0
    assert "up to date" in capsys.readouterr().out


def test_proposal_differs_only_where_the_reference_does(references, tmp_path):
    committed = json.loads(SUITE.read_text())
    frame = read_training_set(references[0] / "training_set.parquet")
    changed = write_training_set(scaled("txn_amount_7d", 10)(frame), tmp_path / "changed")
    suite = propose(SUITE, [changed, references[1]]).suite
    differ = [
        (old["type"], old["kwargs"]["column"])
        for old, new in zip(committed["expectations"], suite["expectations"], strict=True)
        if old != new
    ]
    assert sorted(differ) == [
        ("expect_column_max_to_be_between", "txn_amount_7d"),
        ("expect_column_mean_to_be_between", "txn_amount_7d"),
        ("expect_column_quantile_values_to_be_between", "txn_amount_7d"),
    ]
    old_refs, new_refs = committed["meta"]["proposal"], suite["meta"]["proposal"]
    assert new_refs["references"][1] == old_refs["references"][1]
    assert new_refs["references"][0] != old_refs["references"][0]


def test_check_reports_a_suite_that_drifted_from_the_proposal(references, tmp_path, capsys):
    suite = json.loads(SUITE.read_text())
    edited = next(e for e in suite["expectations"] if is_proposed(e))
    edited["kwargs"]["max_value"] = edited["kwargs"]["max_value"] * 2
    path = tmp_path / "edited.json"
    text = json.dumps(suite, indent=2)
    path.write_text(text)
    assert portside(_propose_args(references, path, "--check")) == 1
    assert "differs from the proposal" in capsys.readouterr().out
    assert path.read_text() == text  # --check writes nothing


@pytest.mark.parametrize("config", CLEAN, ids=lambda c: f"t{c.transactions}-u{c.users}-s{c.seed}")
def test_clean_training_sets_of_other_seeds_and_sizes_pass(config, training_sets, tmp_path):
    summary = validate(
        str(training_sets.build(config)),
        str(tmp_path / "validation"),
        suite=str(SUITE),
        as_of=DATA_END.isoformat(),
    )
    assert summary.passed and summary.failures == []


def test_references_with_different_features_are_refused(references, tmp_path):
    frame = read_training_set(references[0] / "training_set.parquet")
    other = write_training_set(frame.drop(columns=["txn_count_1d"]), tmp_path / "other")
    with pytest.raises(InputDataError, match=r"other/training_set.parquet.*'txn_count_1d'"):
        propose(SUITE, [references[0], other])


def test_a_feature_without_values_is_refused(references, tmp_path):
    frame = read_training_set(references[0] / "training_set.parquet")
    frame["credit_limit"] = frame["credit_limit"].where(frame["credit_limit"] < 0)  # all null
    empty = write_training_set(frame, tmp_path / "empty")
    with pytest.raises(InputDataError, match="column 'credit_limit' has no values"):
        propose(SUITE, [empty])


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        (ProposalSettings(tolerance=0.5), "tolerance"),
        (ProposalSettings(slack=-1.0), "slack"),
        (ProposalSettings(max_headroom=float("nan")), "max_headroom"),
        (ProposalSettings(quantiles=(0.5, 0.25)), "quantiles"),
        (ProposalSettings(quantiles=(1.5,)), "quantiles"),
    ],
)
def test_bad_settings_are_refused_naming_the_setting(settings, field, tmp_path):
    with pytest.raises(ConfigurationError, match=field):
        propose(SUITE, [tmp_path / "not_read"], settings)


def test_a_missing_reference_names_the_file(tmp_path):
    with pytest.raises(InputDataError, match="training_set.parquet"):
        propose(SUITE, [tmp_path / "absent"])
