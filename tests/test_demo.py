"""The embedded default: the demo fleet through the whole pipeline, then again against a champion.

The first demo on an empty folder is the session's `fleet_base`, whose first run is this very command
(`seatrial demo --rows 40000 -q`): its results are read there, and the runs against a champion go on in a copy of it."""
from __future__ import annotations

import pandas as pd
from conftest import mlflow_client, run_seatrial

from seatrial.core import read_json

ROWS = "40000"


def test_demo_fleet_end_to_end_then_against_a_champion(fleet_base, fleet_project):
    base = mlflow_client(fleet_base)
    run1 = base.get_model_version("fleet", "1").tags["seatrial.run"]   # the first demo's run
    assert read_json(fleet_base / "runs" / run1 / "run.json")["model_version"] == "1"
    assert base.get_model_version("fleet", "1").tags["seatrial.status"] == "pending_review"   # the first candidate
    assert {"telemetry.parquet", "vessels.csv", "weather.zarr", "dataset.toml", "faults.parquet"} <= {
        p.name for p in (fleet_base / "data" / "demo").iterdir()}
    ev = fleet_base / "runs" / run1 / "evaluate"
    checks = read_json(ev / "checks.json")
    assert {c["name"] for c in checks} >= {"monotone_stw_kn", "plausible", "regimes_vs_baseline"}
    assert all(c["passed"] for c in checks), checks
    metrics = read_json(ev / "metrics.json")
    assert set(metrics["by_regime"]) == {"vessel", "speed_band", "sea_state", "region", "month"}
    assert metrics["overall"]["rmse"] < metrics["baseline"]["rmse"]
    assert metrics["champion"] is None

    # a reviewer approves version 1 (the audit app's job; here straight through the registry)
    root = fleet_project
    client = mlflow_client(root)
    before = sorted(str(v.version) for v in client.search_model_versions("name = 'fleet'"))
    client.set_registered_model_alias("fleet", "champion", "1")
    second = run_seatrial(root, "demo", "--rows", ROWS, "-q")
    assert second.returncode == 0, second.stderr
    run2 = second.stdout.strip()
    status = {s["stage"]: s["status"] for s in read_json(root / "runs" / run2 / "run.json")["stages"]}
    assert status == {"ingest": "cached", "features": "cached", "train": "cached",
                      "evaluate": "finished", "explain": "finished"}
    metrics = read_json(root / "runs" / run2 / "evaluate" / "metrics.json")
    assert metrics["champion"]["rmse"] == metrics["overall"]["rmse"]    # the same model, reused
    preds = pd.read_parquet(root / "runs" / run2 / "evaluate" / "predictions.parquet")
    assert "champion_pred" in preds and (preds.pred - preds.champion_pred).abs().max() < 1e-9
    # the model itself was reused: it is version 1 already, and no duplicate version is registered
    assert read_json(root / "runs" / run2 / "run.json")["model_version"] == "1"
    assert sorted(str(v.version) for v in client.search_model_versions("name = 'fleet'")) == before == ["1", "2"]

    # nothing changed, champion included: every stage reused, and no stray MLflow run left open
    third = run_seatrial(root, "demo", "--rows", ROWS, "-q")
    assert third.returncode == 0 and third.stdout.strip() == run2, third.stderr
    exp = client.get_experiment_by_name("fleet")
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
