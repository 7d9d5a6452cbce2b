"""seatrial.train: baseline coefficients, LightGBM vs baseline, model file roundtrip, classification."""
import json
import os

import numpy as np
import pandas as pd
import pytest

from seatrial.train import (
    TrainError,
    best_trial,
    default_grid,
    fit_baseline,
    load_booster,
    predict_baseline,
    predict_lightgbm,
    save_booster,
    search_lightgbm,
    train_lightgbm,
)


def _rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@pytest.fixture(scope="module")
def nonlinear():
    rng = np.random.default_rng(7)
    n = 2000
    df = pd.DataFrame({"x": rng.uniform(-3, 3, n), "z": rng.uniform(0, 1, n),
                       "kind": rng.choice(["tanker", "bulk", "box"], n)})
    df["y"] = np.sin(2 * df["x"]) * 3 + np.where(df["kind"] == "box", 2.0, 0.0) + df["z"] ** 2 + rng.normal(0, 0.1, n)
    df["hit"] = (df["y"] > 1).astype(int)
    return df.iloc[:1400], df.iloc[1400:1700], df.iloc[1700:]


def test_baseline_recovers_known_coefficients():
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"a": rng.normal(size=500), "b": rng.uniform(-5, 5, 500), "c": rng.normal(3, 2, 500)})
    df["y"] = -1.5 + 0.7 * df["a"] + 4.0 * df["b"] - 2.0 * df["c"] + rng.normal(0, 1e-3, 500)
    bl = fit_baseline(df, ["a", "b", "c"], "y", "regression")
    assert bl["intercept"] == pytest.approx(-1.5, abs=1e-3)
    assert bl["coefficients"] == pytest.approx({"a": 0.7, "b": 4.0, "c": -2.0}, abs=1e-3)
    restored = json.loads(json.dumps(bl))
    np.testing.assert_array_equal(predict_baseline(restored, df), predict_baseline(bl, df))
    with pytest.raises(TrainError, match="not numeric"):
        fit_baseline(df.assign(a="x"), ["a"], "y", "regression")


def test_lightgbm_beats_baseline_on_nonlinear_relation(nonlinear):
    tr, va, te = nonlinear
    booster = train_lightgbm(tr, ["x", "z", "kind"], "y", "regression", {"num_leaves": 15, "learning_rate": 0.1},
                             categorical=["kind"], valid_df=va)
    base = fit_baseline(tr, ["x", "z"], "y", "regression")
    assert _rmse(predict_lightgbm(booster, te), te["y"]) < 0.3 * _rmse(predict_baseline(base, te), te["y"])


def test_training_is_deterministic(nonlinear):
    tr, _, _ = nonlinear
    params = {"num_leaves": 7, "bagging_fraction": 0.7, "bagging_freq": 1, "num_boost_round": 30}
    a = train_lightgbm(tr, ["x", "z", "kind"], "y", "regression", params, categorical=["kind"])
    b = train_lightgbm(tr, ["x", "z", "kind"], "y", "regression", params, categorical=["kind"])
    assert a.model_to_string() == b.model_to_string()


def test_save_load_roundtrip_predicts_identically(nonlinear, tmp_path):
    tr, va, te = nonlinear
    booster = train_lightgbm(tr, ["x", "z", "kind"], "y", "regression", {"num_leaves": 15}, categorical=["kind"], valid_df=va)
    path = save_booster(booster, tmp_path / "model.txt")
    assert path.read_text().startswith("tree")
    loaded = load_booster(path)
    np.testing.assert_array_equal(predict_lightgbm(loaded, te), predict_lightgbm(booster, te))
    # unseen and reordered categories map the same way after loading
    shuffled = te.assign(kind=pd.Categorical(te["kind"], categories=["box", "tanker", "bulk", "ferry"]))
    np.testing.assert_array_equal(predict_lightgbm(loaded, shuffled), predict_lightgbm(booster, te))


def test_classification(nonlinear):
    tr, va, te = nonlinear
    trials = search_lightgbm(tr, va, ["x", "z", "kind"], "hit", "classification", default_grid()[:2], categorical=["kind"])
    assert [t["metric"] for t in trials] == ["logloss", "logloss"]
    assert all(t["best_iteration"] > 0 and t["fit_seconds"] >= 0 for t in trials)
    best = best_trial(trials)
    booster = train_lightgbm(tr, ["x", "z", "kind"], "hit", "classification", best["params"], categorical=["kind"], valid_df=va)
    p = predict_lightgbm(booster, te)
    assert ((p >= 0) & (p <= 1)).all()
    accuracy = ((p > 0.5) == te["hit"].to_numpy()).mean()
    assert accuracy > 0.9
    base = fit_baseline(tr, ["x", "z"], "hit", "classification")
    pb = predict_baseline(base, te)
    assert ((pb > 0) & (pb < 1)).all()
    with pytest.raises(TrainError, match="0/1 target"):
        fit_baseline(tr, ["x"], "y", "classification")


def test_search_regression_trials_are_json(nonlinear):
    tr, va, _ = nonlinear
    trials = search_lightgbm(tr, va, ["x", "z", "kind"], "y", "regression", default_grid()[:2], categorical=["kind"])
    assert json.loads(json.dumps(trials)) == trials
    assert best_trial(trials)["value"] == min(t["value"] for t in trials)
    with pytest.raises(TrainError, match="grid is empty"):
        search_lightgbm(tr, va, ["x"], "y", "regression", [])


def test_choose_threads_by_size_and_affinity(monkeypatch):
    from seatrial import train
    assert train.choose_threads(2_930, 73, cores=2) == 1        # the house-sales table: one thread
    assert train.choose_threads(100_000, 73, cores=2) == 2
    assert train.choose_threads(5_000_000, 20, cores=16) == 16
    assert train.choose_threads(0, 0, cores=4) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3}, raising=False)   # e.g. `taskset -c 3`
    assert train.available_cores() == 1 and train.choose_threads(10**8, 100) == 1


def test_train_lightgbm_chooses_threads_unless_the_caller_does(nonlinear):
    tr, va, te = nonlinear
    feats = ["x", "z", "kind"]
    small = train_lightgbm(tr, feats, "y", "regression", {"num_boost_round": 5}, categorical=["kind"])
    assert small.params["num_threads"] == 1                     # 1,400 rows x 3 features
    for key, value in [("num_threads", 0), ("n_jobs", 2), ("nthread", 2)]:
        own = train_lightgbm(tr, feats, "y", "regression", {key: value, "num_boost_round": 5}, categorical=["kind"])
        assert own.params[key] == value and (key == "num_threads" or "num_threads" not in own.params)
    # predictions do not depend on the thread count predict_lightgbm picks
    booster = train_lightgbm(tr, feats, "y", "regression", {"num_leaves": 15}, categorical=["kind"], valid_df=va)
    from seatrial.train import model_frame
    np.testing.assert_array_equal(predict_lightgbm(booster, te),
                                  booster.predict(model_frame(te, feats, ["kind"]), num_threads=2))
