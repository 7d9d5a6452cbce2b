"""The embedded default: the demo fleet through the whole pipeline, then again against a champion."""
from __future__ import annotations

import pandas as pd
from conftest import mlflow_client, run_seatrial

from seatrial.core import read_json

ROWS = "40000"


def test_demo_fleet_end_to_end_then_against_a_champion(tmp_path):
    root = tmp_path
    first = run_seatrial(root, "demo", "--rows", ROWS, "-q")
    assert first.returncode == 0, first.stderr
    run1 = first.stdout.strip()
    assert {"telemetry.parquet", "vessels.csv", "weather.zarr", "dataset.toml", "faults.parquet"} <= {
        p.name for p in (root / "data" / "demo").iterdir()}
    ev = root / "runs" / run1 / "evaluate"
    checks = read_json(ev / "checks.json")
    assert {c["name"] for c in checks} >= {"monotone_stw_kn", "plausible", "regimes_vs_baseline"}
    assert all(c["passed"] for c in checks), checks
    metrics = read_json(ev / "metrics.json")
    assert set(metrics["by_regime"]) == {"vessel", "speed_band", "sea_state", "region", "month"}
    assert metrics["overall"]["rmse"] < metrics["baseline"]["rmse"]
    assert metrics["champion"] is None
    client = mlflow_client(root)
    assert str(client.get_model_version_by_alias("fleet", "candidate").version) == "1"

    # a reviewer approves version 1 (the audit app's job; here straight through the registry)
    client.set_registered_model_alias("fleet", "champion", "1")
    second = run_seatrial(root, "demo", "--rows", ROWS, "-q")
    assert second.returncode == 0, second.stderr
    run2 = second.stdout.strip()
    status = {s["stage"]: s["status"] for s in read_json(root / "runs" / run2 / "run.json")["stages"]}
    assert status == {"ingest": "cached", "features": "cached", "train": "cached",
                      "evaluate": "finished", "explain": "finished"}
    metrics = read_json(root / "runs" / run2 / "evaluate" / "metrics.json")
    assert metrics["champion"]["rmse"] == metrics["overall"]["rmse"]    # the same model, retrained identically
    preds = pd.read_parquet(root / "runs" / run2 / "evaluate" / "predictions.parquet")
    assert "champion_pred" in preds and (preds.pred - preds.champion_pred).abs().max() < 1e-9
    # the model itself was reused: it is version 1 already, and no duplicate version is registered
    assert read_json(root / "runs" / run2 / "run.json")["model_version"] == "1"
    assert [str(v.version) for v in client.search_model_versions("name = 'fleet'")] == ["1"]

    # nothing changed, champion included: every stage reused, and no stray MLflow run left open
    third = run_seatrial(root, "demo", "--rows", ROWS, "-q")
    assert third.returncode == 0 and third.stdout.strip() == run2, third.stderr
    exp = client.get_experiment_by_name("fleet")
    assert not client.search_runs([exp.experiment_id], "attributes.status = 'RUNNING'")
