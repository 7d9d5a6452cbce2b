"""The audit store on a real project: two versions of the demo fleet model, a real MLflow registry, real files."""
from __future__ import annotations

import shutil

import numpy as np
import pandas as pd
import pytest
from conftest import mlflow_client

from seatrial.audit import store as audit_store
from seatrial.audit.store import (INVERSE_LINK, AuditStore, AuditStoreError, cached_version, clear_cache, demo_data,
                                  identical_predictions, load_version, open_version, review_queue)
from seatrial.core import SeatrialError, read_json
from seatrial.review import UnknownVersionError, collect_evidence
from seatrial.train import load_booster, predict_lightgbm


@pytest.fixture(scope="module")
def project(fleet_base, tmp_path_factory):
    "A private copy of the session's fleet project: versions 1 and 2 of 'fleet', both pending review, no champion."
    root = tmp_path_factory.mktemp("audit") / "project"
    shutil.copytree(fleet_base, root)
    runs = {read_json(p)["model_version"]: p.parent.name for p in (root / "runs").glob("*/run.json")}
    assert set(runs) == {"1", "2"}, runs
    return root, runs


@pytest.fixture
def fresh():
    clear_cache()
    yield
    clear_cache()


def test_a_version_opens_from_the_files_its_evidence_pins(project, fresh):
    root, runs = project
    data, evidence = open_version(root, "fleet", "2")
    assert evidence.run == runs["2"] and evidence.paths["evaluate.predictions"].name == "predictions.parquet"
    assert data.values_path == evidence.paths["features"] and data.values_path.name == "features.parquet"
    assert evidence.paths["notebook:04_evaluate"].name == "04_evaluate.ipynb" and evidence.paths["explain.shap"].exists()
    with pytest.raises(UnknownVersionError, match="has no version '9'"):
        open_version(root, "fleet", "9")


def test_frame_holds_every_test_row_with_its_columns(project, fresh):
    root, runs = project
    store = AuditStore(root=root, model="fleet", version="2")
    preds = pd.read_parquet(root / "runs" / runs["2"] / "evaluate" / "predictions.parquet")
    test = preds[preds.split == "test"]
    f = store.frame
    assert len(f) == len(test) > 1000
    assert store.columns == {"time": "time", "entity": "vessel_id", "lat": "lat", "lon": "lon"}
    assert {"row_id", "time", "vessel_id", "lat", "lon", "target", "pred", "baseline_pred", "residual"} <= set(f.columns)
    assert {f"regime_{r}" for r in ("vessel", "speed_band", "sea_state", "region", "month")} <= set(f.columns)
    assert {"shap_stw_kn", "shap_draught_m"} <= set(f.columns)
    assert not {"champion_pred", "champion_residual", "error_diff"} & set(f.columns)   # no champion yet
    assert store.champion_version == ""
    assert f.row_id.is_monotonic_increasing and set(f.row_id) == set(test.row_id)
    assert store.task == "regression" and store.regimes == ["vessel", "speed_band", "sea_state", "region", "month"]
    assert store.feature == store.features[0] == store.importance().feature[0]
    assert {c["name"] for c in store.checks} >= {"plausible", "monotone_stw_kn"}
    assert store.metrics["overall"]["n"] == len(f)
    if store.evidence is not None:      # pinned through seatrial.review
        assert str(store.evidence.version) == "2" and store.evidence.run == runs["2"] and store.evidence.digest


def test_shap_values_are_joined_by_row_id(project, fresh):
    root, runs = project
    store = AuditStore(root=root, model="fleet", version="2")
    shap = pd.read_parquet(root / "runs" / runs["2"] / "explain" / "shap.parquet").set_index("row_id")
    preds = pd.read_parquet(root / "runs" / runs["2"] / "evaluate" / "predictions.parquet").set_index("row_id")
    for rid in store.frame.row_id.sample(5, random_state=1):
        row = store.frame.set_index("row_id").loc[rid]
        assert row["shap_stw_kn"] == shap.loc[rid, "shap_stw_kn"]
        assert row["pred"] == preds.loc[rid, "pred"] and row["vessel_id"] == preds.loc[rid, "vessel_id"]
    assert store.base_value == shap.base_value.iloc[0]


def test_contributions_add_up_to_the_prediction(project, fresh):
    root, runs = project
    store = AuditStore(root=root, model="fleet", version="2")
    assert store.data.link in ("identity", "log")
    features = pd.read_parquet(root / "runs" / runs["1"] / "features" / "features.parquet").set_index("row_id")
    for rid in store.frame.row_id.iloc[[0, 17, -1]]:
        c = store.contributions(rid)
        raw = c.attrs["base_value"] + c.contribution.sum()
        assert raw == pytest.approx(c.attrs["raw"])
        assert INVERSE_LINK[c.attrs["link"]](raw) == pytest.approx(c.attrs["prediction"], rel=1e-6)
        assert c.attrs["prediction"] == store.frame.set_index("row_id").loc[rid, "pred"]
        assert c.set_index("feature").loc["stw_kn", "value"] == features.loc[rid, "stw_kn"]
        assert list(c.contribution.abs()) == sorted(c.contribution.abs(), reverse=True)
    with pytest.raises(AuditStoreError, match="not a test row"):
        store.contributions(-1)


def test_selection_drives_every_derived_table(project, fresh):
    root, _ = project
    store = AuditStore(root=root, model="fleet", version="2")
    full = store.regime_table("vessel")
    assert list(full.columns[:4]) == ["level", "n", "rmse", "baseline_rmse"]
    assert full.n.sum() == len(store.frame)
    lat, lon = store.frame.lat, store.frame.lon
    x0, x1, y0, y1 = lon.quantile(0.2), lon.quantile(0.7), lat.quantile(0.1), lat.quantile(0.8)
    store.select_box(x1, y1, x0, y0)      # corners in any order
    inside = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
    assert 0 < len(store.selected) == inside.sum() < len(store.frame)
    assert set(store.selection) == set(store.frame.row_id[inside])
    part = store.regime_table("vessel")
    assert part.n.sum() == inside.sum()
    assert store.regime_table("speed_band").n.sum() == inside.sum()
    assert store.residual_histogram().candidate.sum() <= inside.sum()
    sel_imp = store.importance().set_index("feature").mean_abs_shap
    assert sel_imp["stw_kn"] == pytest.approx(store.frame.shap_stw_kn[inside].abs().mean())
    assert store.residuals_over_time().n.sum() == inside.sum()
    store.clear_selection()
    assert store.regime_table("vessel").n.sum() == len(store.frame)
    with pytest.raises(AuditStoreError, match="no regime 'tide'"):
        store.regime_table("tide")


def test_lasso_and_box(project, fresh):
    root, _ = project
    store = AuditStore(root=root, model="fleet", version="2")
    lat, lon = store.frame.lat.to_numpy(), store.frame.lon.to_numpy()
    x0, x1, y0, y1 = np.quantile(lon, 0.1), np.quantile(lon, 0.9), np.quantile(lat, 0.1), np.quantile(lat, 0.9)
    store.select_box(x0, y0, x1, y1)
    box = set(store.selection)
    store.select_lasso([x0, x1, x1, x0], [y0, y0, y1, y1])
    edge = (np.isclose(lon, x0) | np.isclose(lon, x1) | np.isclose(lat, y0) | np.isclose(lat, y1))
    assert set(store.selection) ^ box <= set(store.frame.row_id[edge])   # only points on the border may differ
    # a triangle: the lower-left half of the box
    store.select_lasso([x0, x1, x0], [y0, y0, y1])
    below = (lon - x0) / (x1 - x0) + (lat - y0) / (y1 - y0) < 1
    expected = set(store.frame.row_id[below & (lon > x0) & (lat > y0)])
    got = set(store.selection)
    assert len(got ^ expected) <= 2 and 0 < len(got) < len(box)
    assert store.regime_table("vessel").n.sum() == len(got)
    store.select_lasso([x0, x1], [y0, y1])     # not a polygon: nothing
    assert len(store.selected) == 0 and store.regime_table("vessel").empty


def test_champion_predictions_beside_the_candidate(project, fresh):
    root, runs = project
    client = mlflow_client(root)
    client.set_registered_model_alias("fleet", "champion", "1")
    try:
        store = AuditStore(root=root, model="fleet", version="2")
        f = store.frame
        assert store.champion_version == "1" and store.data.champion_source == "recomputed"
        assert {"champion_pred", "champion_residual", "error_diff"} <= set(f.columns)
        # the champion predicted the candidate's test rows: what version 1's own evaluate stage predicted for them
        v1 = pd.read_parquet(root / "runs" / runs["1"] / "evaluate" / "predictions.parquet").set_index("row_id")
        np.testing.assert_allclose(f.champion_pred, v1.loc[f.row_id, "pred"], rtol=1e-9)
        np.testing.assert_allclose(f.error_diff, f.residual.abs() - (f.target - f.champion_pred).abs())
        table = store.regime_table("sea_state")
        assert {"champion_rmse", "delta_vs_champion", "rel_vs_champion"} <= set(table.columns)
        # once per (version, champion) per process: a second session shares the very same frame
        other = AuditStore(root=root, model="fleet", version="2")
        assert other.frame is f
        # the champion under review is its own champion
        own = AuditStore(root=root, model="fleet", version="1")
        assert own.data.champion_source == "candidate" and (own.frame.champion_pred == own.frame.pred).all()
    finally:
        client.delete_registered_model_alias("fleet", "champion")


def test_stored_champion_predictions_are_used_only_when_current(project, fresh, tmp_path):
    root, _ = project
    p = collect_evidence(root, "fleet", "2").paths
    preds = pd.read_parquet(p["evaluate.predictions"])
    preds["champion_pred"] = 42.0
    preds.to_parquet(tmp_path / "predictions.parquet")
    files = {"predictions": tmp_path / "predictions.parquet", "shap": p["explain.shap"], "config": p["config"],
             "features": p["features"], "metrics": p["evaluate.metrics"], "checks": p["evaluate.checks"]}
    same = load_version(files, "2", champion="1", evaluated="1")
    assert same.champion_source == "evaluate" and (same.frame.champion_pred == 42.0).all()
    booster = load_booster(collect_evidence(root, "fleet", "1").paths["model"])
    stale = load_version(files, "2", champion="1", evaluated="3", champion_booster=lambda: booster)
    assert stale.champion_source == "recomputed"
    table = pd.read_parquet(files["features"]).set_index("row_id").loc[stale.frame.row_id]
    np.testing.assert_allclose(stale.frame.champion_pred, predict_lightgbm(booster, table))
    none = load_version(files, "2", champion="", evaluated="1")
    assert "champion_pred" not in none.frame and none.champion_version == ""


def test_unknown_version_is_refused(project, fresh):
    root, _ = project
    with pytest.raises(SeatrialError):
        open_version(root, "fleet", "9")
    store = AuditStore()
    with pytest.raises(AuditStoreError, match="no model version is open"):
        store.regime_table("vessel")


def test_the_cache_keeps_versions_within_its_memory_budget(monkeypatch, fresh):
    made = [demo_data(2000, seed=k) for k in range(3)]
    monkeypatch.setattr(audit_store, "CACHE_BYTES", int(made[0].nbytes() * 2.5))
    for k, d in enumerate(made): cached_version((k,), lambda d=d: d)
    assert list(audit_store._CACHE) == [(1,), (2,)]          # the oldest went
    d = made[2]                                               # frame and feature values count
    assert d.nbytes() == int(d.frame.memory_usage(index=False).sum() + d.feature_values().memory_usage(index=False).sum())
    monkeypatch.setattr(audit_store, "CACHE_BYTES", 1)
    cached_version((3,), lambda: made[0])
    assert list(audit_store._CACHE) == [(3,)]                # the newest stays, however large
    assert made[0].derived("x", lambda: [1]) is made[0].derived("x", lambda: [2])


def _files(root, version="2"):
    p = collect_evidence(root, "fleet", version).paths
    return {"predictions": p["evaluate.predictions"], "shap": p["explain.shap"], "config": p["config"],
            "features": p["features"], "metrics": p["evaluate.metrics"], "checks": p["evaluate.checks"]}


def test_the_store_knows_the_datasets_labels_and_units_and_keeps_regime_order(project, fresh, tmp_path):
    root, _ = project
    store = AuditStore(root=root, model="fleet", version="2")
    v = store.vocabulary
    assert (v.target_label, v.target_unit, v.title("stw_kn")) == ("fuel consumption", "t/day", "Speed through water (kn)")
    assert v.regime_label("speed_band") == "speed band"
    bands = lambda levels: [str(x).split(" ")[0] for x in levels if x != "missing"]  # noqa: E731  (a band with its unit: its range)
    assert bands(store.regime_table("speed_band").level) == ["0–8", "8–11", "11–14", "14–30"]
    months = [m for m in store.regime_table("month").level if m != "missing"]
    assert months == sorted(months, key=["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                         "Dec"].index)
    # a predictions file whose regime levels are plain text (as an older evaluate stage wrote them): still in order
    files = _files(root)
    preds = pd.read_parquet(files["predictions"])
    for c in [c for c in preds if c.startswith("regime_")]: preds[c] = preds[c].astype(str)
    preds.to_parquet(tmp_path / "predictions.parquet")
    data = load_version(files | {"predictions": tmp_path / "predictions.parquet"}, "2")
    assert bands(data.frame.regime_speed_band.cat.categories) == ["0–8", "8–11", "11–14", "14–30"]
    assert bands(data.frame.regime_sea_state.cat.categories)[:2] == ["0–1.25", "1.25–2.5"]


def test_a_candidate_that_repeats_the_champions_predictions_is_flagged(project, fresh, tmp_path):
    root, runs = project
    files = _files(root)
    preds = pd.read_parquet(files["predictions"])
    preds["champion_pred"] = preds["pred"]      # what a retrain that changed nothing looks like beside its champion
    preds.to_parquet(tmp_path / "predictions.parquet")
    same = load_version(files | {"predictions": tmp_path / "predictions.parquet"}, "2", champion="1", evaluated="1")
    assert same.identical_to_champion() and AuditStore.from_data(same).identical_to_champion
    # the queue, from the two versions' prediction files (once per version and champion)
    assert identical_predictions(root, "fleet", "2", "1") is False
    client = mlflow_client(root)
    client.set_registered_model_alias("fleet", "champion", "1")
    v2 = root / "runs" / runs["2"] / "evaluate" / "predictions.parquet"
    saved = v2.read_bytes()
    try:
        assert str(v2.resolve()).startswith(str(root.resolve()))       # this module's own copy, never the shared project
        mine = pd.read_parquet(v2)
        theirs = pd.read_parquet(root / "runs" / runs["1"] / "evaluate" / "predictions.parquet").set_index("row_id")
        common = mine.row_id.isin(theirs.index)
        mine.loc[common, "pred"] = theirs.loc[mine.row_id[common], "pred"].to_numpy()
        mine.to_parquet(v2)
        assert identical_predictions(root, "fleet", "2", "1") is True
        queue = {c["version"]: c for c in review_queue(root)}
        assert queue["2"]["identical_to"] == "1"
    finally:
        v2.write_bytes(saved)
        client.delete_registered_model_alias("fleet", "champion")
