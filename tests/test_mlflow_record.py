"""The MLflow record reads true: read back with a real MlflowClient on the project's SQLite store after a real run of the
40k-row sample (the shared `sample_base` project), and the registered model served by MLflow itself (`fleet_base`)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from conftest import mlflow_client
from seatrial.core import read_json
from seatrial.review import APPROVER, collect_evidence, decide, registry_drift, verify


def _record(root: Path) -> dict:
    (path,) = (root / "runs").glob("*/run.json")
    return read_json(path)


def _ms(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp() * 1000


@pytest.fixture(scope="module")
def mlflow_runs(sample_base):
    "(client, experiment, parent run, stage runs by name) of the sample's one pipeline run."
    client, record = mlflow_client(sample_base), _record(sample_base)
    exp = client.get_experiment_by_name("fleet")
    parent = client.get_run(record["mlflow_run_id"])
    children = client.search_runs([exp.experiment_id], f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'")
    return client, exp, parent, {r.data.tags["seatrial.stage"]: r for r in children}


def test_stage_runs_span_the_stages_real_time(sample_base, mlflow_runs):
    _, _, parent, stages = mlflow_runs
    record = _record(sample_base)
    assert [s["status"] for s in record["stages"]] == ["finished"] * 5
    for s in record["stages"]:
        run = stages[s["stage"]]
        assert abs(run.info.start_time - _ms(s["started"])) < 1000, s["stage"]
        assert abs(run.info.end_time - _ms(s["ended"])) < 1000, s["stage"]
        assert abs((run.info.end_time - run.info.start_time) / 1000 - s["seconds"]) < 1, s["stage"]
        assert abs(run.data.metrics["stage_seconds"] - s["seconds"]) < 1, s["stage"]
        assert run.data.tags["seatrial.timing"] == "executed"
    assert stages["train"].data.metrics["stage_seconds"] > 1   # was logged as a few ms: the time of the logging
    assert abs(parent.info.start_time - _ms(record["started"])) < 1000
    assert abs((parent.info.end_time - parent.info.start_time) / 1000 - record["seconds"]) < 1
    assert abs(parent.info.end_time - _ms(record["ended"])) < 1000


def test_the_experiment_opens_on_training_runs(mlflow_runs):
    _, exp, _, _ = mlflow_runs
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"   # what MLflow 3.x's UI reads


def test_the_parent_run_carries_the_headline(sample_base, mlflow_runs):
    client, _, parent, _ = mlflow_runs
    run = _record(sample_base)["run_id"]
    metrics = read_json(sample_base / "runs" / run / "evaluate" / "metrics.json")
    checks = read_json(sample_base / "runs" / run / "evaluate" / "checks.json")
    m = parent.data.metrics
    assert m["test_rmse"] == pytest.approx(metrics["overall"]["rmse"]) and m["test_r2"] == pytest.approx(metrics["overall"]["r2"])
    assert m["baseline_rmse"] == pytest.approx(metrics["baseline"]["rmse"])
    assert "champion_rmse" not in m   # no champion yet
    assert (m["checks_passed"], m["checks_failed"]) == (sum(c["passed"] for c in checks), sum(not c["passed"] for c in checks))
    p = parent.data.params
    assert p["train.valid_fraction"] == "0.2" and p["ingest.config"] == "data/sample/dataset.toml"   # project-relative
    assert json.loads(p["train.grid"]) == [{"learning_rate": 0.1, "min_data_in_leaf": 20, "num_leaves": 15}]
    inputs = {d.dataset.name: d.dataset for d in client.get_run(parent.info.run_id).inputs.dataset_inputs}
    assert {"config", "table", "entities", "grid"} <= set(inputs)
    assert all(len(d.digest) == 32 for d in inputs.values())


def test_the_train_run_logs_the_chosen_hyperparameters(sample_base, mlflow_runs):
    _, _, _, stages = mlflow_runs
    train = sample_base / "runs" / _record(sample_base)["run_id"] / "train"
    chosen, manifest = read_json(train / "best_params.json"), read_json(train / "manifest.json")
    params = stages["train"].data.params
    for k, v in chosen.items():
        assert params[f"chosen.{k}"] == (v if isinstance(v, str) else json.dumps(v)), k
    assert params["chosen.num_leaves"] == "15" and params["chosen.learning_rate"] == "0.1"
    assert stages["train"].data.metrics["best_iteration"] == manifest["best_iteration"] == chosen["num_boost_round"]


def test_a_decided_version_loses_candidate_and_hand_edits_are_named(sample_base, tmp_path):
    root = tmp_path / "project"
    shutil.copytree(sample_base, root, symlinks=True)
    client = mlflow_client(root)
    assert str(client.get_model_version_by_alias("fleet", "candidate").version) == "1"
    assert registry_drift(root, "fleet") == []
    decide(root, "fleet", "1", "approve", "ana", [APPROVER], "fits", collect_evidence(root, "fleet", "1").digest)
    assert client.get_model_version("fleet", "1").aliases == ["champion"]   # champion only: candidate went
    assert registry_drift(root, "fleet") == [] and verify(root) == []
    # edits by hand in MLflow, each named
    client.set_registered_model_alias("fleet", "candidate", "1")
    client.set_model_version_tag("fleet", "1", "seatrial.decision.by", "mallory")
    client.delete_model_version_tag("fleet", "1", "seatrial.model_sha256")
    drift = registry_drift(root, "fleet")
    assert any("the alias candidate points at version 1, which the ledger records as approved" in d for d in drift), drift
    assert any("fleet version 1: the tag seatrial.decision.by is 'mallory', but the ledger says 'ana'" in d for d in drift), drift
    assert any("fleet version 1: the tag seatrial.model_sha256 is missing" in d for d in drift), drift
    assert len(drift) == 3 and set(drift) <= set(verify(root))
    client.delete_registered_model_alias("fleet", "champion")
    assert any("the registry's champion is not set, but the ledger's is version 1" in d for d in registry_drift(root, "fleet"))


# Run in a fresh interpreter where `import seatrial` fails, as under `mlflow models serve` on a machine without seatrial:
# the registered model must predict from text categoricals with nothing but what it ships (its code/ folder).
_PYFUNC_SCRIPT = r"""
import sys
sys.modules["seatrial"] = None
import mlflow, numpy as np, pandas as pd
from mlflow.models import Model
store, rows, out = sys.argv[1:]
mlflow.set_tracking_uri(store); mlflow.set_registry_uri(store)
model = mlflow.pyfunc.load_model("models:/fleet/1")
local = mlflow.artifacts.download_artifacts("models:/fleet/1", dst_path=out)
example = Model.load(local).load_input_example(local)
example.to_parquet(f"{out}/example.parquet")
np.savez(f"{out}/predictions.npz", example=model.predict(example), rows=model.predict(pd.read_parquet(rows)))
print(model.metadata.flavors["python_function"]["loader_module"], sorted(m for m, v in sys.modules.items() if "seatrial" in m and v is not None))
"""


def test_the_registered_model_serves_under_pyfunc_as_seatrial_predicts(fleet_base, tmp_path):
    import numpy as np
    import pandas as pd

    from seatrial.train import load_booster, predict_lightgbm
    client = mlflow_client(fleet_base)
    run = client.get_model_version("fleet", "1").tags["seatrial.run"]
    booster = load_booster(fleet_base / "runs" / run / "train" / "model.txt")   # the file the approval gate pins
    rows = pd.read_parquet(fleet_base / "runs" / run / "features" / "features.parquet").sample(300, random_state=0)
    rows = rows[booster.feature_name()].reset_index(drop=True)
    rows.loc[:4, "vessel_type"] = "ferry"   # a type the model never saw counts as missing, as in seatrial
    rows.loc[5:9, "vessel_type"] = None
    rows["vessel_type"] = rows.vessel_type.astype(object)   # plain text, as a JSON request carries it
    rows.to_parquet(tmp_path / "rows.parquet")
    proc = subprocess.run([sys.executable, "-c", _PYFUNC_SCRIPT, f"sqlite:///{fleet_base / 'mlflow.db'}",
                           str(tmp_path / "rows.parquet"), str(tmp_path)],
                          cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")},
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split("\n")[-2] == "lightgbm_pyfunc []", proc.stdout   # its own loader, and no seatrial module
    got = np.load(tmp_path / "predictions.npz")
    example = pd.read_parquet(tmp_path / "example.parquet")
    assert not isinstance(example.vessel_type.dtype, pd.CategoricalDtype) and len(example) > 0
    assert np.max(np.abs(got["example"] - predict_lightgbm(booster, example))) <= 1e-9
    assert got["rows"].shape == (300,) and np.max(np.abs(got["rows"] - predict_lightgbm(booster, rows))) <= 1e-9
    assert np.isfinite(got["rows"]).all() and len(np.unique(got["rows"])) > 100
