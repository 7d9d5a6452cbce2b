"""The workbench as objects, on a real finished project (a copy of the shared `sample_base`): its tabs, the runs table and
the comparison, a run started through the Run tab's own button to its end, Stop, the Review tab's audit app, and a run
from the workbench against the same run from the command line (cache keys and MLflow records). No browser here:
tests/test_workbench_lab.py drives it in JupyterLab."""
from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import mlflow_client, run_seatrial

from seatrial.core import read_json
from seatrial.workbench import TABS, JupyterServer, Workbench

CONFIG = "data/sample/dataset.toml"
GRID = [{"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20}]   # sample_base's one-point search


@pytest.fixture(scope="module")
def project(sample_base, tmp_path_factory) -> Path:
    "A copy of `sample_base` for this module's workbench to run in (one finished run, model version 1 awaiting review)."
    root = tmp_path_factory.mktemp("workbench") / "project"
    shutil.copytree(sample_base, root)
    return root


@pytest.fixture(scope="module")
def seeded(project):
    "The workbench of `project` after a run started with its Run button: the form's grid as sample_base's, seed 1."
    wb = Workbench(project)
    assert wb.runs.table is not None   # the Runs tab is made before the run: the run's end refreshes it
    wb.parameters.set("train", "grid", GRID)
    wb.parameters.set("train", "seed", 1)
    wb.show("Run")
    assert not wb.run.start_button.disabled, wb.run.why.value
    wb.run.start_button.click()                       # the button's own handler
    assert wb.run.run is not None, wb.run.outcome.value
    state = wb.run.wait(900)
    yield wb, state
    wb.close()


def _runs(root: Path) -> dict[str, dict]:
    return {p.parent.name: read_json(p) for p in (root / "runs").glob("*/run.json")}


def test_the_tabs_and_the_runs_table(project):
    wb = Workbench(project)
    try:
        assert wb.tabs.titles == TABS and wb.config == project / CONFIG
        assert "rows" in wb.dataset.details.value                          # the Dataset tab's summary
        (only,) = _runs(project)
        table = wb.runs.table
        assert list(table["run"]) == [only] and list(table["status"]) == ["finished"]
        assert list(table["model_version"]) == ["1"] and list(table["review"]) == ["awaits review"]
        assert only in wb.runs.view.value and "RMSE" in wb.runs.view.value
        assert [v for _, v in wb.runs.choose.options] == [only] and wb.runs.compare_button.disabled
        wb.runs.choose.value = (only,)
        assert wb.runs.compare_button.disabled                              # one run: nothing to compare
        wb.parameters.field("train", "valid_fraction").input.value = 1.5   # refused in the form: no run
        wb.show("Run")
        assert wb.run.start_button.disabled and "valid_fraction must be" in wb.run.why.value
    finally:
        wb.close()


def test_a_run_from_the_run_tab_to_its_end(project, seeded):
    wb, state = seeded
    assert state.status == "finished", (state.error, state.log_tail)
    assert [s["status"] for s in state.stages] == ["cached", "cached", "finished", "finished", "finished"]
    assert f"Run <b>{state.run_id}</b> finished in" in wb.run.outcome.value
    assert f"model version <b>{state.model_version}</b> awaits review" in wb.run.outcome.value and state.model_version == "2"
    assert "reused (unchanged)" in wb.run.stages_view.value and len(wb.run.updates) >= 3
    assert not wb.run.start_button.disabled and wb.run.stop_button.disabled
    record = read_json(project / "runs" / state.run_id / "run.json")
    assert record["source"] == "workbench" and record["stages"][2]["params"]["seed"] == 1
    # the Runs tab was read again at the run's end; the two runs compare through its own button
    _until(lambda: len(wb.runs.table) == 2, "the Runs tab refreshed")
    assert wb.runs.table["run"].iloc[0] == state.run_id
    first = wb.runs.table["run"].iloc[1]
    wb.runs.choose.value = (first, state.run_id)
    wb.runs.server = JupyterServer(project)                  # as a JupyterLab serving the project would tell the kernel
    wb.runs.compare_button.click()
    c = wb.runs.comparison
    assert c is not None, wb.runs.result.value
    assert c.params.loc[("train", "seed")].tolist() == [0, 1]
    shown = wb.runs.result.value
    assert "Parameters that differ" in shown and first in shown and state.run_id in shown
    assert f'href="/lab/tree/reports/{state.run_id}/03_train.ipynb"' in shown
    # the figures follow on a thread, the kernel free meanwhile
    _until(lambda: bytes(wb.runs.regime_image.value[:4]) == b"\x89PNG" and bytes(wb.runs.residual_image.value[:4]) == b"\x89PNG",
           "the comparison's figures", 60)


def _until(check, what: str, timeout: float = 120):
    deadline = time.time() + timeout
    while not (found := check()):
        assert time.time() < deadline, f"{what}: not within {timeout:.0f} s"
        time.sleep(0.2)
    return found


def _normal(value: str, ids: dict[str, str]) -> str:
    for old, new in ids.items(): value = value.replace(old, new)
    return value


def _structure(root: Path, run: str) -> dict:
    "A pipeline run's MLflow record, with what differs by nature between two runs (ids, times) named instead of given."
    client, record = mlflow_client(root), read_json(root / "runs" / run / "run.json")
    parent = client.get_run(record["mlflow_run_id"])
    exp = parent.info.experiment_id
    children = client.search_runs([exp], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    ids = {run: "<run>", parent.info.run_id: "<parent>", str(root): "<root>"}
    ids |= {c.info.run_id: f"<{c.data.tags['seatrial.stage']}>" for c in children}

    def shape(r) -> dict:
        return {"status": r.info.status,
                "params": {k: _normal(v, ids) for k, v in r.data.params.items()},
                "tags": {k: _normal(v, ids) for k, v in r.data.tags.items() if k != "mlflow.runName" and not k.startswith("mlflow.log-model")},
                "metrics": sorted(r.data.metrics)}
    return {"parent": shape(parent), "stages": {c.data.tags["seatrial.stage"]: shape(c) for c in children}}


def test_the_same_run_from_the_cli_is_the_workbench_run(project, seeded):
    "The command line computes the workbench run's cache keys: asked for the same run, it has nothing to do."
    _, state = seeded
    proc = run_seatrial(project, "run", "--config", CONFIG, "-p", f"train.grid={json.dumps(GRID)}", "-p", "train.seed=1")
    assert proc.returncode == 0, proc.stderr
    assert f"nothing changed: every stage is reused; the results are in run {state.run_id}" in proc.stderr


def test_a_workbench_run_and_the_same_cli_run_are_recorded_alike(sample_base, seeded, tmp_path):
    "Run on two copies of the same project, one from the workbench and one from the command line: the same record."
    _, state = seeded
    root = tmp_path / "cli"
    shutil.copytree(sample_base, root)
    proc = run_seatrial(root, "run", "--config", CONFIG, "-q", "-p", f"train.grid={json.dumps(GRID)}", "-p", "train.seed=1",
                        timeout=900)
    assert proc.returncode == 0, proc.stderr
    (cli_run,) = [r for r in _runs(root) if r not in _runs(sample_base)]
    mine, theirs = read_json(seeded[0].root / "runs" / state.run_id / "run.json"), read_json(root / "runs" / cli_run / "run.json")
    assert (mine["source"], theirs["source"]) == ("workbench", "cli")
    assert [(s["stage"], s["status"], s["params"]) for s in mine["stages"]] == [(s["stage"], s["status"], s["params"]) for s in theirs["stages"]]
    # the keys of every stage up to the first that ran are the same; after it, a key takes the digests of what that
    # stage wrote (a trained model's file), which two trainings need not reproduce bit for bit
    assert [s["key"] for s in mine["stages"][:3]] == [s["key"] for s in theirs["stages"][:3]]
    a, b = _structure(seeded[0].root, state.run_id), _structure(root, cli_run)
    assert a["parent"]["tags"].pop("seatrial.source") == "workbench" and b["parent"]["tags"].pop("seatrial.source") == "cli"
    assert _differences(a, b) == []


def _differences(a, b, where: str = "") -> list[str]:
    "Where two nested records differ, and how."
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b)) for d in _differences(a.get(k, "<none>"), b.get(k, "<none>"), f"{where}/{k}")]
    return [] if a == b else [f"{where}: {a!r} != {b!r}"]


def test_stop_from_the_run_tab_records_the_run_interrupted(project):
    wb = Workbench(project)
    try:
        wb.parameters.set("train", "grid", GRID)                  # sample_base's values: every stage reused but explain
        wb.run.from_stage.value = "explain"
        wb.show("Run")
        wb.run.start_button.click()
        run = wb.run.run
        _until(lambda: ((run.state().current or {}).get("cell") or 0) >= 3, "explain at work", 300)
        wb.run.stop_button.click()                                # the button stops the run off the caller's thread
        state = _until(lambda: wb.run.state if wb.run.state and wb.run.state.done and run.done else None, "the stopped run", 120)
        assert state.status == "interrupted" and "recorded as interrupted" in wb.run.outcome.value
        record = read_json(project / "runs" / run.run_id / "run.json")
        assert record["status"] == "interrupted" and [s["status"] for s in record["stages"]] == ["cached"] * 4 + ["interrupted"]
        assert not list((project / "reports" / run.run_id).glob(".*.partial.ipynb"))
        assert mlflow_client(project).get_run(record["mlflow_run_id"]).info.status == "KILLED"
    finally:
        wb.close()


def test_the_review_tab_serves_and_shows_the_audit_app(project):
    wb = Workbench(project)
    try:
        wb.review.load(wait=True)
        assert [d["version"] for d in wb.review.queue][-1] == "1" and not wb.review.open_button.disabled
        assert "awaiting review" in wb.review.versions_view.value and "fleet" in wb.review.queue_view.value
        url = wb.review.serve()
        server = wb.review._server
        _until(lambda: _answers(url), "the audit app's server", 180)
        app = wb.review.show_here("fleet", "1")
        assert (app.store.model, app.store.version) == ("fleet", "1")
    finally:
        wb.close()
    assert server.wait(20) is not None                            # closing the workbench stopped the server


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status == 200
    except OSError:
        return False
