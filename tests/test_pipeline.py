"""The pipeline end to end through the real `seatrial` command: papermill kernels, MLflow on SQLite, caching, failures."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import PIPELINE, add_cell, copy_pipeline, mlflow_client, run_seatrial, write_quakes

from seatrial.core import hash_path, read_json

STAGES = ["ingest", "features", "train", "evaluate", "explain"]


@pytest.fixture(scope="module")
def quakes_run(tmp_path_factory):
    "One full pipeline run on R's quakes data, shared by the tests that only read its results."
    root = tmp_path_factory.mktemp("quakes")
    config = write_quakes(root / "data")
    (root / "stages").symlink_to(PIPELINE, target_is_directory=True)   # seatrial's own stages, in its git checkout
    # paths relative to the project, as `make demo` passes them: papermill changes the working directory meanwhile
    proc = run_seatrial(root, "run", "--config", "data/dataset.toml", "--pipeline", "stages", "-q")
    assert proc.returncode == 0, proc.stderr
    return root, config, proc.stdout.strip().splitlines()[-1], proc


def test_run_writes_reports_runs_and_record(quakes_run):
    root, _, run_id, proc = quakes_run
    for i, stage in enumerate(STAGES, 1):
        assert (root / "reports" / run_id / f"0{i}_{stage}.ipynb").exists()
        assert (root / "reports" / run_id / f"0{i}_{stage}.html").stat().st_size > 10_000
        assert (root / "runs" / run_id / stage / "manifest.json").exists()
    record = read_json(root / "runs" / run_id / "run.json")
    assert record["status"] == "finished" and [s["stage"] for s in record["stages"]] == STAGES
    assert all(s["status"] == "finished" for s in record["stages"])
    for stage in STAGES:   # progress names each stage with its time and cells
        assert f"{stage:<10} done in" in proc.stderr
    assert "without encryption" not in proc.stderr


def test_mlflow_records_parent_children_inputs_and_candidate(quakes_run):
    root, config, run_id, _ = quakes_run
    client = mlflow_client(root)
    exp = client.get_experiment_by_name("quakes")
    parent = client.search_runs([exp.experiment_id], f"tags.`seatrial.run` = '{run_id}'")[0]
    assert parent.info.status == "FINISHED"
    assert "mlflow.source.git.commit" in parent.data.tags    # the stage code's commit
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    by_stage = {r.data.tags.get("seatrial.stage"): r for r in children}
    assert set(STAGES) <= set(by_stage)
    ingest = by_stage["ingest"]
    assert ingest.data.metrics["rows"] == 1000
    raw = {d.dataset.name: d.dataset.digest for d in ingest.inputs.dataset_inputs}
    assert raw["table"] == hash_path(config.parent / "quakes.csv")[:32]
    arts = [a.path for a in client.list_artifacts(by_stage["train"].info.run_id, "notebook")]
    assert "notebook/03_train.ipynb" in arts and "notebook/03_train.html" in arts
    trials = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{by_stage['train'].info.run_id}'")
    assert len(trials) >= 2 and all("valid_rmse" in t.data.metrics for t in trials)
    assert by_stage["evaluate"].data.metrics["checks_passed"] == 1.0
    mv = client.get_model_version_by_alias("quakes", "candidate")
    assert mv.tags["seatrial.status"] == "pending_review"
    assert mv.tags["seatrial.run"] == run_id and mv.tags["seatrial.checks_passed"] == "true"
    assert len(mv.tags["seatrial.data_digest"]) == 64
    import mlflow
    mlflow.set_tracking_uri(f"sqlite:///{root / 'mlflow.db'}")
    info = mlflow.models.get_model_info("models:/quakes@candidate")
    assert info.flavors["lightgbm"] and info.signature is not None and info.saved_input_example_info is not None


def test_explain_covers_every_test_row(quakes_run):
    import pandas as pd
    root, _, run_id, _ = quakes_run
    features = pd.read_parquet(root / "runs" / run_id / "features" / "features.parquet")
    shap = pd.read_parquet(root / "runs" / run_id / "explain" / "shap.parquet")
    test_ids = set(features.loc[features.split == "test", "row_id"])
    assert set(shap.row_id) == test_ids and len(shap) == len(test_ids)
    contrib = shap.filter(like="shap_").sum(axis=1) + shap.base_value
    assert (contrib - shap.pred).abs().max() < 1e-6


def test_unchanged_rerun_reuses_everything(quakes_run):
    root, config, run_id, _ = quakes_run
    before = sorted(p.name for p in (root / "runs").iterdir())
    proc = run_seatrial(root, "run", "--config", str(config), "-q")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == run_id                   # the answer is the run that holds the results
    assert "nothing changed" in proc.stderr
    assert sorted(p.name for p in (root / "runs").iterdir()) == before   # no new run


def test_from_stage_reruns_that_stage_and_later(quakes_run):
    root, config, first, _ = quakes_run
    proc = run_seatrial(root, "run", "--config", str(config), "--from", "evaluate", "-q")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    status = {s["stage"]: s["status"] for s in read_json(root / "runs" / run_id / "run.json")["stages"]}
    assert status == {"ingest": "cached", "features": "cached", "train": "cached", "evaluate": "finished", "explain": "finished"}
    assert not (root / "reports" / run_id / "01_ingest.ipynb").exists()
    listing = run_seatrial(root, "runs")
    assert first in listing.stdout and run_id in listing.stdout
    show = run_seatrial(root, "show", run_id)
    assert "reused from" in show.stdout and "check" in show.stdout


def test_changed_parameter_reruns_from_that_stage(quakes_run):
    root, config, _, _ = quakes_run
    proc = run_seatrial(root, "run", "--config", str(config), "-p", "train.seed=3", "-q")
    assert proc.returncode == 0, proc.stderr
    status = {s["stage"]: s["status"] for s in read_json(root / "runs" / proc.stdout.strip() / "run.json")["stages"]}
    assert status["features"] == "cached" and status["train"] == "finished" and status["explain"] == "finished"


@pytest.mark.parametrize("param, message", [
    ("x;import os #=1", "not a valid parameter name"),
    ("train.x;import os #=1", "not a valid parameter name"),
    ("train.seed=abc", "parameter 'seed' must be int"),
    ("nosuch=1", "no stage declares ['nosuch']"),
    ("train.config=x", "set by the runner"),
    ("audit.x=1", "no stage named ['audit']"),
])
def test_bad_parameters_are_refused_before_anything_runs(quakes_project, param, message):
    root, config = quakes_project
    proc = run_seatrial(root, "run", "--config", str(config), "-p", param, "-q")
    assert proc.returncode == 1
    assert message in proc.stderr and "Traceback" not in proc.stderr
    assert not (root / "runs").exists() and not (root / "reports").exists()


def _broken_run(root: Path, config: Path, stage_file: str, cell: str, *args: str):
    pipeline = copy_pipeline(root / "pipeline")
    add_cell(pipeline / stage_file, cell)
    return run_seatrial(root, "run", "--config", str(config), "--pipeline", str(pipeline), "-q", *args)


def test_failing_stage_stops_the_run_and_keeps_everything(quakes_project):
    root, config = quakes_project
    proc = _broken_run(root, config, "03_train.ipynb", "raise ValueError('hull data corrupt')")
    assert proc.returncode == 1
    assert "stage 'train' failed at cell" in proc.stderr and "ValueError: hull data corrupt" in proc.stderr
    assert "Traceback" not in proc.stderr
    run_dir = next((root / "runs").iterdir())
    record = read_json(run_dir / "run.json")
    assert [s["status"] for s in record["stages"]] == ["finished", "finished", "failed"]
    report = root / "reports" / run_dir.name / "03_train.ipynb"
    outputs = [o for c in json.loads(report.read_text())["cells"] for o in c.get("outputs", [])]
    assert any(o.get("ename") == "ValueError" for o in outputs)        # the error is at the failing cell
    assert not (root / "reports" / run_dir.name / "04_evaluate.ipynb").exists()   # later stages did not run
    ingest = read_json(run_dir / "ingest" / "manifest.json")
    for out in ingest["outputs"].values():                               # earlier outputs intact
        assert hash_path(run_dir / "ingest" / out["path"]) == out["sha256"]   # relative to the manifest's folder
    assert not list(root.rglob(".*.partial.ipynb"))
    client = mlflow_client(root)
    parent = client.search_runs([client.get_experiment_by_name("quakes").experiment_id], "tags.`seatrial.run` != ''")[0]
    assert parent.info.status == "FAILED"


def test_sys_exit_in_a_stage_is_incomplete_not_success(quakes_project):
    root, config = quakes_project
    proc = _broken_run(root, config, "01_ingest.ipynb", "import sys\nsys.exit(0)")
    assert proc.returncode == 1
    assert "stage 'ingest' failed" in proc.stderr


def test_hung_cell_fails_within_the_timeout(quakes_project):
    root, config = quakes_project
    proc = _broken_run(root, config, "01_ingest.ipynb", "import time\ntime.sleep(600)", "--cell-timeout", "5")
    assert proc.returncode == 1
    assert "stage 'ingest' failed" in proc.stderr and "time limit" in proc.stderr


def test_dead_kernel_fails_the_stage(quakes_project):
    root, config = quakes_project
    proc = _broken_run(root, config, "01_ingest.ipynb", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    assert proc.returncode == 1
    assert "stage 'ingest' failed" in proc.stderr and "kernel died" in proc.stderr


def test_model_reused_from_a_failed_run_is_registered_once(quakes_project):
    root, config = quakes_project
    proc = _broken_run(root, config, "04_evaluate.ipynb", "raise RuntimeError('checks crashed')")
    assert proc.returncode == 1 and "stage 'evaluate' failed" in proc.stderr
    client = mlflow_client(root)
    assert not client.search_model_versions("name = 'quakes'")            # a failed run registers nothing

    fixed = run_seatrial(root, "run", "--config", str(config), "-q")        # evaluate fixed; training reused
    assert fixed.returncode == 0, fixed.stderr
    record = read_json(root / "runs" / fixed.stdout.strip() / "run.json")
    assert [s["status"] for s in record["stages"]][:3] == ["cached"] * 3
    mv = client.get_model_version_by_alias("quakes", "candidate")
    assert str(mv.version) == str(record["model_version"]) == "1"
    model_run = client.get_run(mv.run_id)
    assert model_run.data.tags["seatrial.stage"] == "train" and "seatrial.cached_from" in model_run.data.tags
    assert model_run.data.tags["mlflow.parentRunId"] == record["mlflow_run_id"]

    again = run_seatrial(root, "run", "--config", str(config), "--from", "evaluate", "-q")   # same model once more
    assert again.returncode == 0, again.stderr
    assert [str(v.version) for v in client.search_model_versions("name = 'quakes'")] == ["1"]
    assert read_json(root / "runs" / again.stdout.strip() / "run.json")["model_version"] == "1"
