"""The Airflow UI in a real browser: `make airflow`'s launcher (loopback only, its own home, a
free port, dags/ as the DAG folder, the local runner) over small generated data; headless
Chromium (Debian's package, driven by Playwright) logs in, sees the DAGs, unpauses and triggers
`training_pipeline` from its trigger form for the data's last day, watches the run succeed and
opens the validate task's log.

Unpausing also starts the scheduled run for today, as it would for a user; validate stops it
(the generated data ends a month earlier, stale as of today), and the manual run starts when it
has failed (max_active_runs=1): the grid shows both.

Screenshots of every step are kept: under the test's tmp folder (printed) and in
data/test-artifacts/airflow-ui/, which CI keeps.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pytest
from airflow_env import Standalone, shut_down, start_standalone, wait_healthy
from conftest import BIN, DATA_END, ROOT, make_workspace, run_cli
from mlflow_server import free_port

CHROMIUM = Path("/usr/bin/chromium")
pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"{CHROMIUM} missing: install Debian's chromium (.ci/run does)",
    ),
]

ARTIFACTS = ROOT / "data" / "test-artifacts" / "airflow-ui"
DAG_IDS = ("feature_materialization", "training_pipeline")
TASKS = ("features", "validate", "train", "evaluate", "push")
# The run's data interval ends at the generated data's end (00:00 UTC): the trigger form's
# logical date, in the browser's time zone (UTC here).
LOGICAL_DATE = DATA_END
PARSE_TIMEOUT_S = 180.0
RUN_TIMEOUT_S = 1200.0  # features, validate, train (a small Keras model), evaluate, push on 2 cores
VALIDATE_LINE = (
    "validate: succeeded in"  # what `python -m portside.components validate` prints last
)
UI_TIMEOUT_MS = 30_000


def _environment(project: Path, base: Path) -> dict[str, str]:
    """The local runner working in the workspace, so the DAG's default params
    (data/sources/..., feature_repo, the suite, data/mlflow) are the workspace's."""
    return {
        "PORTSIDE_AIRFLOW_RUNNER": "local",
        "PORTSIDE_PROJECT_DIR": str(project),
        "PORTSIDE_ARTIFACT_ROOT": str(base / "runs"),
        "PORTSIDE_CACHE_DIR": str(base / "cache"),
    }


@dataclass
class AirflowUI:
    standalone: Standalone
    project: Path  # the workspace's root

    @property
    def url(self) -> str:
        return self.standalone.url

    def output(self) -> str:
        return self.standalone.output()


@pytest.fixture(scope="module")
def airflow_ui(workspace, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowUI]:
    """`python -m portside.pipelines.airflow_standalone` (what `make airflow` runs) over a workspace
    with its own registry, online store and MLflow; stopped with Ctrl-C at the end."""
    base = tmp_path_factory.mktemp("airflow_ui")
    project = make_workspace(base / "project", sources=workspace.sources)
    run_cli([str(BIN / "feast"), "apply"], cwd=project.repo)
    log = base / "launcher.log"
    standalone = start_standalone(
        base / "home",
        free_port(),
        log,
        ["--dags", str(ROOT / "dags")],
        env=_environment(project.root, base),
    )
    try:
        print(f"Airflow healthy after {wait_healthy(standalone):.0f} s at {standalone.url}")
        print(f"launcher log: {log}")
        yield AirflowUI(standalone, project.root)
    finally:
        shut_down(standalone)


class Screenshots:
    """Numbered full-page screenshots in `folder`, copied to ARTIFACTS as they are taken."""

    def __init__(self, page, folder: Path) -> None:
        self.page, self.folder, self.taken = page, folder, 0
        folder.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(ARTIFACTS, ignore_errors=True)
        ARTIFACTS.mkdir(parents=True)

    def __call__(self, name: str) -> Path:
        self.taken += 1
        path = self.folder / f"{self.taken:02d}-{name}.png"
        self.page.screenshot(path=path, full_page=True)
        shutil.copy(path, ARTIFACTS / path.name)
        return path

    def dump(self, name: str) -> None:
        """The page's HTML beside the screenshots (what a failed selector was looking at)."""
        html = self.folder / f"{self.taken:02d}-{name}.html"
        html.write_text(self.page.content())
        shutil.copy(html, ARTIFACTS / html.name)


@pytest.fixture
def browser_page(tmp_path: Path) -> Iterator[tuple]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
        context = browser.new_context(
            viewport={"width": 1440, "height": 1000}, timezone_id="UTC", locale="en-US"
        )
        context.set_default_timeout(UI_TIMEOUT_MS)
        page = context.new_page()
        folder = tmp_path / "screenshots"
        print(f"screenshots: {folder} (copied to {ARTIFACTS})")
        try:
            yield page, Screenshots(page, folder)
        finally:
            context.close()
            browser.close()


def _log_in(page, ui: AirflowUI) -> None:
    page.goto(ui.url + "/dags")
    page.wait_for_url("**/auth/login**")  # the simple auth manager's form
    page.locator("input[name=username]").fill("admin")
    page.locator("input[name=password]").fill(ui.standalone.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/auth/" not in url)


def _fill_the_trigger_form(page, ui: AirflowUI):
    """Open and fill the trigger form: logical date the data's end, two epochs, the
    workspace's MLflow database. Returns the form (the dialog)."""
    page.get_by_role("button", name="Trigger Dag").click()
    form = page.get_by_role("dialog")
    form.get_by_text("Single Run").first.wait_for()
    form.locator("input[name=element_epochs]").fill("2")
    # An empty default string counts as missing in the form (required field).
    mlflow = ui.project / "data" / "mlflow" / "mlflow.db"
    form.locator("input[name=element_tracking_uri]").fill(str(mlflow))
    # Last, and checked: the form sets its default (now) shortly after it opens.
    date = form.locator("input[name=logicalDate]")
    wanted = LOGICAL_DATE.strftime("%Y-%m-%dT%H:%M")  # datetime-local, the browser's UTC
    deadline = time.monotonic() + 15
    while True:
        date.fill(wanted)
        date.blur()
        page.wait_for_timeout(1000)
        if date.input_value() == wanted or time.monotonic() > deadline:
            break
    assert date.input_value() == wanted
    return form


def _wait_for_run_state(page, ui: AirflowUI, run_id: str, shots: Screenshots) -> str:
    """Reload the run's page until its state badge says it ended; the state's text."""
    run_url = f"{ui.url}/dags/training_pipeline/runs/{run_id}"
    deadline = time.monotonic() + RUN_TIMEOUT_S
    header = page.get_by_role("heading", name=run_id)
    while time.monotonic() < deadline:
        page.goto(run_url)
        header.wait_for()
        # The run's state badge sits beside its id (the task table below has badges too).
        shown = header.locator("xpath=..").inner_text()
        for end in ("Success", "Failed"):
            if end in shown:
                return end
        time.sleep(10)
    shots("run-timeout")
    pytest.fail(f"run {run_id} did not end within {RUN_TIMEOUT_S:.0f} s:\n{ui.output()}")


def test_trigger_training_from_the_ui_and_read_the_validate_log(airflow_ui, browser_page):
    page, shots = browser_page
    ui = airflow_ui
    try:
        _log_in(page, ui)
        shots("dags-list")
        dag_link = page.get_by_role("link", name="training_pipeline").first
        dag_link.wait_for(timeout=PARSE_TIMEOUT_S * 1000)  # the DAG processor's first parse
        for dag_id in DAG_IDS:
            assert page.get_by_role("link", name=dag_id).first.is_visible(), dag_id
        shots("dags")

        dag_link.click()
        page.wait_for_url("**/dags/training_pipeline")
        for task_id in TASKS:  # the grid's task column
            page.get_by_text(task_id, exact=True).first.wait_for()
        pause = page.get_by_test_id("toggle-pause")
        assert pause.get_attribute("data-state") == "unchecked"  # new DAGs start paused
        pause.click()
        page.wait_for_function(
            "() => document.querySelector('[data-testid=toggle-pause]').dataset.state === 'checked'"
        )
        shots("unpaused")

        form = _fill_the_trigger_form(page, ui)
        shots("trigger-form")
        form.get_by_role("button", name="Trigger", exact=True).click()
        page.wait_for_url("**/dags/training_pipeline/runs/manual__*")
        run_id = unquote(page.url.rstrip("/").split("/runs/")[1])
        shots("run-started")
        print(f"triggered {run_id}")
        # The run is for the data's last day, not for now.
        page.get_by_text(LOGICAL_DATE.strftime("%Y-%m-%d %H:%M:%S")).first.wait_for()

        state = _wait_for_run_state(page, ui, run_id, shots)
        shots("run-ended")
        assert state == "Success", f"run {run_id} ended {state}:\n{ui.output()}"
        # The grid: one cell per task of this run, each a link to the task instance.
        page.goto(f"{ui.url}/dags/training_pipeline")
        for task_id in TASKS:
            cell = page.get_by_test_id(f"grid-{run_id}-{task_id}")
            cell.wait_for()
        shots("grid")
        # Every task instance of the run shows Success in the run's task table.
        page.goto(f"{ui.url}/dags/training_pipeline/runs/{run_id}")
        rows = page.get_by_role("row")
        for task_id in TASKS:
            row = rows.filter(has=page.get_by_role("link", name=task_id, exact=True))
            row.get_by_text("Success").wait_for()  # the table fills in after the header
        shots("task-instances")

        page.get_by_test_id(f"grid-{run_id}-validate").click()
        page.wait_for_url("**/tasks/validate")
        page.get_by_text(VALIDATE_LINE).first.wait_for(timeout=60_000)
        shots("validate-log")
        # The command the task ran judges freshness as of the run's end: the data's end.
        assert page.get_by_text(f"--as-of {LOGICAL_DATE.isoformat()}").count(), "--as-of"
    except BaseException:
        shots("failure")
        shots.dump("failure")
        raise
