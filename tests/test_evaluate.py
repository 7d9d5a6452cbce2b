"""seatrial.evaluate: scores against scikit-learn, regime labels, behavioural checks and the gate."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from seatrial.core import SeatrialError
from seatrial.evaluate import (
    ChecksFailedError,
    EvaluateError,
    add_regimes,
    check_monotone,
    check_plausible,
    check_regimes_vs_baseline,
    evaluate_model,
    gate,
    metrics_by_regime,
    run_checks,
    score,
)


@pytest.fixture
def rng():
    return np.random.default_rng(42)


def test_regression_scores_match_sklearn(rng):
    y = rng.uniform(1, 50, 500)
    p = y + rng.normal(0.5, 2, 500)
    s = score(y, p)
    assert s["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert s["mae"] == pytest.approx(skm.mean_absolute_error(y, p))
    assert s["mape"] == pytest.approx(skm.mean_absolute_percentage_error(y, p))
    assert s["r2"] == pytest.approx(skm.r2_score(y, p))
    assert s["bias"] == pytest.approx(np.mean(p - y))
    assert s["n"] == 500


def test_mape_ignores_zero_targets_and_json_is_valid():
    s = score([0.0, 0.0, 2.0], [1.0, 0.0, 3.0])
    assert s["mape"] == pytest.approx(0.5)
    assert score([0.0, 0.0], [1.0, 2.0])["mape"] is None
    assert score([3.0, 3.0], [1.0, 2.0])["r2"] is None  # constant target: R² undefined
    json.dumps(s, allow_nan=False)


def test_classification_scores_match_sklearn(rng):
    y = rng.integers(0, 2, 400)
    p = np.clip(0.3 * y + rng.uniform(0, 0.7, 400), 0.01, 0.99)
    s = score(y, p, "classification")
    assert s["logloss"] == pytest.approx(skm.log_loss(y, p))
    assert s["auc"] == pytest.approx(skm.roc_auc_score(y, p))
    assert s["accuracy"] == pytest.approx(skm.accuracy_score(y, p >= 0.5))
    assert s["brier"] == pytest.approx(skm.brier_score_loss(y, p))
    ties = np.round(p, 1)  # ties count half, as in scikit-learn
    assert score(y, ties, "classification")["auc"] == pytest.approx(skm.roc_auc_score(y, ties))


def test_missing_predictions_are_left_out_of_scores():
    s = score([1.0, 2.0, 3.0], [1.0, np.nan, 3.0])
    assert s["n"] == 2 and s["rmse"] == 0.0


def test_regime_labels():
    df = pd.DataFrame({
        "vessel_id": ["v1", "v2", "v1", "v3"],
        "hs_m": [0.0, 1.25, 19.0, 25.0],
        "time": pd.to_datetime(["2025-01-31 23:59", "2025-02-01 00:00", "2025-12-31 12:00", "2026-01-01 00:00"], utc=True),
        "lat": [41.0, 49.9, -33.0, 89.9],
        "lon": [-19.5, -10.1, 151.0, 179.9],
    })
    r = add_regimes(df, {
        "vessel": {"column": "vessel_id"},
        "sea_state": {"column": "hs_m", "bins": [0, 1.25, 2.5, 4, 20]},
        "month": {"column": "time", "by": "month"},
        "region": {"by": "region", "size_deg": 10},
    })
    assert r.regime_vessel.tolist() == ["v1", "v2", "v1", "v3"]
    assert r.regime_sea_state.tolist() == ["0–1.25", "1.25–2.5", "4–20", "above 20"]
    assert r.regime_month.tolist() == ["2025-01", "2025-02", "2025-12", "2026-01"]
    assert r.regime_region.tolist() == ["40N–50N 20W–10W", "40N–50N 20W–10W", "40S–30S 150E–160E", "80N–90N 170E–180E"]
    # regions are ordered north to south
    assert list(r.regime_region.cat.categories) == ["80N–90N 170E–180E", "40N–50N 20W–10W", "40S–30S 150E–160E"]
    assert "regime_vessel" not in df  # the input is not modified


def test_regime_spec_may_be_an_object():
    class RegimeSpec:  # what seatrial.dataset provides: attributes column, bins, by, size_deg
        column, bins, by, size_deg = "stw_kn", [0, 8, 11, 14, 30], None, None
    r = add_regimes(pd.DataFrame({"stw_kn": [7.9, 8.0, 30.0]}), {"speed_band": RegimeSpec()})
    assert r.regime_speed_band.tolist() == ["0–8", "8–11", "14–30"]


def test_regime_errors_name_the_problem():
    df = pd.DataFrame({"stw_kn": [1.0]})
    with pytest.raises(EvaluateError, match=r"regime 'sea'.*'hs_m'"):
        add_regimes(df, {"sea": {"column": "hs_m", "bins": [0, 1]}})
    with pytest.raises(EvaluateError, match="by = 'week'"):
        add_regimes(df, {"w": {"column": "stw_kn", "by": "week"}})
    with pytest.raises(EvaluateError, match="strictly increasing"):
        add_regimes(df, {"s": {"column": "stw_kn", "bins": [5, 1]}})
    assert issubclass(EvaluateError, SeatrialError)


def _frame(rng, n=600):
    t = pd.DataFrame({"stw_kn": rng.uniform(0, 14, n), "draught_m": rng.uniform(8, 12, n),
                      "vessel_id": rng.choice(["a", "b"], n)})
    t["target"] = 0.01 * t.stw_kn**3 + t.draught_m
    t["pred"] = t.target + rng.normal(0, 0.5, n)
    t["baseline_pred"] = t.target + rng.normal(0, 1.0, n)
    t.loc[t.vessel_id == "b", "pred"] += 3.0  # the candidate is poor on vessel b only
    return t


def test_metrics_by_regime_rows(rng):
    t = _frame(rng)
    out = metrics_by_regime(t, {"vessel": {"column": "vessel_id"}})
    rows = {r["level"]: r for r in out["vessel"]}
    assert set(rows) == {"a", "b"}
    a = t[t.vessel_id == "a"]
    assert rows["a"]["n"] == len(a)
    assert rows["a"]["rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(a.target, a.pred)))
    assert rows["a"]["baseline_rmse"] == pytest.approx(np.sqrt(skm.mean_squared_error(a.target, a.baseline_pred)))
    assert rows["a"]["rel_vs_baseline"] == pytest.approx(rows["a"]["rmse"] / rows["a"]["baseline_rmse"] - 1)
    assert "champion_rmse" not in rows["a"]
    t["champion_pred"] = t.target
    assert "rel_vs_champion" in metrics_by_regime(t, {"vessel": {"column": "vessel_id"}})["vessel"][0]


def test_monotone_check_passes_for_increasing_and_fails_for_decreasing(rng):
    X = pd.DataFrame({"stw_kn": rng.uniform(0, 14, 200), "draught_m": rng.uniform(8, 12, 200)})
    up = check_monotone(X, lambda d: d.stw_kn.to_numpy() ** 3 + d.draught_m.to_numpy(), "stw_kn")
    assert up["passed"] and up["value"]["share_wrong"] == 0.0 and up["value"]["mean_effect"] > 0
    down = check_monotone(X, lambda d: 100 - 2 * d.stw_kn.to_numpy(), "stw_kn")
    assert not down["passed"]
    assert down["value"]["share_wrong"] == 1.0 and down["value"]["mean_effect"] < 0
    assert "stw_kn" in down["meaning"] and "rise" in down["meaning"]
    # a model that rises for most rows but falls for a quarter of them fails a 5% tolerance
    bumpy = check_monotone(X, lambda d: np.where(d.draught_m > 11, -1, 1) * d.stw_kn.to_numpy(), "stw_kn")
    assert not bumpy["passed"] and 0.15 < bumpy["value"]["share_wrong"] < 0.35
    assert check_monotone(X, lambda d: np.where(d.draught_m > 11, -1, 1) * d.stw_kn.to_numpy(), "stw_kn",
                          tolerance=0.5)["passed"]


def test_monotone_check_recomputes_derived_features_with_prepare(rng):
    X = pd.DataFrame({"stw_kn": rng.uniform(0, 14, 200)})
    X["stw_cubed"] = X.stw_kn**3
    def model(d):  # sees speed only through the derived feature
        return 2 * d.stw_cubed.to_numpy()
    assert not check_monotone(X, model, "stw_kn")["passed"]
    assert check_monotone(X, model, "stw_kn", prepare=lambda d: d.assign(stw_cubed=d.stw_kn**3))["passed"]


def test_monotone_check_errors(rng):
    X = pd.DataFrame({"stw_kn": [1.0, 2.0]})
    with pytest.raises(EvaluateError, match="'sog_kn'"):
        check_monotone(X, lambda d: d.stw_kn.to_numpy(), "sog_kn")
    with pytest.raises(EvaluateError, match="direction"):
        check_monotone(X, lambda d: d.stw_kn.to_numpy(), "stw_kn", direction="up")


def test_plausibility_fails_on_nan_and_out_of_range():
    assert check_plausible([0.0, 10.0, 250.0], 0.0, 250.0)["passed"]
    nan = check_plausible([1.0, np.nan], 0.0, 250.0)
    assert not nan["passed"] and nan["value"]["n_missing"] == 1
    out = check_plausible([-0.1, 5.0, 251.0], 0.0, 250.0)
    assert not out["passed"] and (out["value"]["n_below"], out["value"]["n_above"]) == (1, 1)
    assert "[0, 250]" in out["meaning"]
    json.dumps(out, allow_nan=False)


def test_regime_check_names_the_failing_regime(rng):
    t = _frame(rng)
    by = metrics_by_regime(t, {"vessel": {"column": "vessel_id"}})
    c = check_regimes_vs_baseline(by, "regression", 0.10)
    assert not c["passed"] and c["threshold"] == 0.10
    assert len(c["value"]) == 1 and c["value"][0].startswith("vessel b: rmse")
    assert "vessel b" in c["meaning"]
    assert check_regimes_vs_baseline(by, "regression", 10.0)["passed"]


def test_gate_and_error_message(rng):
    t = _frame(rng)
    by = metrics_by_regime(t, {"vessel": {"column": "vessel_id"}})
    checks = run_checks(t, features=t, predict=lambda d: -d.stw_kn.to_numpy(),
                        monotone=[{"feature": "stw_kn", "direction": "increasing"}],
                        target_min=0, target_max=100, by_regime=by, max_regime_loss_vs_baseline=0.10)
    assert [c["name"] for c in checks] == ["monotone_stw_kn", "plausible", "regimes_vs_baseline"]
    assert not gate(checks)
    with pytest.raises(ChecksFailedError) as e:
        gate(checks, raise_error=True)
    msg = str(e.value)
    assert msg.startswith("2 of 3 behavioural checks failed")
    assert "- monotone_stw_kn: Raising stw_kn" in msg and "- regimes_vs_baseline:" in msg and "vessel b" in msg
    assert "plausible" not in msg
    assert [c["name"] for c in e.value.failed] == ["monotone_stw_kn", "regimes_vs_baseline"]
    assert gate([c for c in checks if c["passed"]], raise_error=True)


def test_champion_check_is_informational_unless_thresholded(rng):
    t = _frame(rng)
    t["champion_pred"] = t.target + rng.normal(0, 0.1, len(t))  # the champion is better
    info = run_checks(t)[-1]
    assert info["name"] == "vs_champion" and info["passed"] and info["threshold"] is None
    assert info["value"]["relative"] > 0
    strict = run_checks(t, max_loss_vs_champion=0.05)[-1]
    assert not strict["passed"] and "at most 5%" in strict["meaning"]


def test_evaluate_model_outputs(rng, tmp_path):
    n = 800
    f = pd.DataFrame({"row_id": np.arange(100, 100 + n), "stw_kn": rng.uniform(2, 16, n),
                      "draught_m": rng.uniform(8, 12, n), "vessel_id": rng.choice(["a", "b", "c"], n),
                      "time": pd.date_range("2025-01-01", periods=n, freq="6h", tz="UTC"),
                      "lat": rng.uniform(-10, 10, n), "lon": rng.uniform(0, 20, n)})
    f["fuel"] = 0.01 * f.stw_kn**3 + f.draught_m + rng.normal(0, 0.3, n)
    f["split"] = np.where(np.arange(n) >= 600, "test", "train")
    def model(d):
        return 0.01 * d.stw_kn.to_numpy() ** 3 + d.draught_m.to_numpy()

    def base(d):
        return 0.012 * d.stw_kn.to_numpy() ** 3 + 10

    regimes = {"vessel": {"column": "vessel_id"}, "speed": {"column": "stw_kn", "bins": [0, 8, 12, 20]},
               "month": {"column": "time", "by": "month"}, "region": {"by": "region", "size_deg": 10}}
    pred, metrics, checks = evaluate_model(
        f, model, base, target="fuel", regimes=regimes, monotone=[{"feature": "stw_kn"}],
        target_min=0, target_max=100, max_regime_loss_vs_baseline=0.1, keep=["lat", "lon"])
    assert list(pred.columns) == ["row_id", "split", "target", "pred", "baseline_pred", "residual", "lat", "lon",
                                  "regime_vessel", "regime_speed", "regime_month", "regime_region"]
    assert pred.row_id.tolist() == f.row_id.tolist()
    assert np.allclose(pred.residual, f.fuel - pred.pred)
    assert metrics["overall"]["n"] == 200 and metrics["champion"] is None
    assert set(metrics["by_regime"]) == set(regimes)
    assert sum(r["n"] for r in metrics["by_regime"]["region"]) == 200
    assert [c["name"] for c in checks] == ["monotone_stw_kn", "plausible", "regimes_vs_baseline"]
    assert gate(checks)
    json.dumps({"metrics": metrics, "checks": checks}, allow_nan=False)
    pred.to_parquet(tmp_path / "predictions.parquet")
    assert pd.read_parquet(tmp_path / "predictions.parquet").regime_speed.tolist() == pred.regime_speed.tolist()
    with pytest.raises(EvaluateError, match="no rows with split == 'test'"):
        evaluate_model(f.assign(split="train"), model, base, target="fuel")
    with pytest.raises(EvaluateError, match="'fuel_t_day'"):
        evaluate_model(f, model, base, target="fuel_t_day")


def test_plots_draw(rng):
    import matplotlib
    matplotlib.use("Agg")
    from seatrial.evaluate import plot_metrics_by_regime, plot_residuals
    t = _frame(rng)
    by = metrics_by_regime(t, {"vessel": {"column": "vessel_id"}})
    assert len(plot_metrics_by_regime({"by_regime": by}, "vessel").axes[0].patches) == 4
    with pytest.raises(EvaluateError, match="no regime 'sea'"):
        plot_metrics_by_regime(by, "sea")
    assert len(plot_residuals(t.assign(split="test")).axes) == 3
