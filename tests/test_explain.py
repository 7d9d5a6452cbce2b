"""seatrial.explain: additivity, agreement with shap.TreeExplainer, every row keyed by row_id, tampering detected."""
from __future__ import annotations

import json

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from seatrial.explain import (
    AdditivityError,
    ExplainError,
    ShapResult,
    assert_additive,
    booster_objective,
    compute_shap,
    global_importance,
    plot_dependence,
    plot_importance,
    shap_scale,
    write_shap,
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    n = 3000
    X = pd.DataFrame({"stw_kn": rng.uniform(2, 16, n), "draught_m": rng.uniform(8, 13, n),
                      "hs_m": rng.gamma(2, 0.8, n), "heading_deg": rng.uniform(0, 360, n)})
    X.loc[rng.choice(n, 50, replace=False), "hs_m"] = np.nan  # missing values take LightGBM's default branch
    y = 0.012 * X.stw_kn**3 * (X.draught_m / 11) ** (2 / 3) * (1 + 0.05 * X.hs_m.fillna(1)) + rng.normal(0, 1, n)
    row_id = np.arange(n) * 3 + 11  # stable ids that are not positions
    return X.set_axis(row_id), y.to_numpy()


@pytest.fixture(scope="module")
def booster(data):
    X, y = data
    params = {"objective": "regression", "num_leaves": 31, "verbose": -1, "num_threads": 1}
    return lgb.train(params, lgb.Dataset(X, y), num_boost_round=60)


def test_additivity_holds(data, booster):
    X, _ = data
    res = compute_shap(booster, X, chunk_rows=1000)
    total = res.values.sum(axis=1).to_numpy() + res.base_value
    assert np.abs(total - booster.predict(X, raw_score=True)).max() < 1e-9
    assert np.abs(res.pred - booster.predict(X)).max() < 1e-9
    assert res.output == "raw" and res.features == list(X.columns)


def test_values_equal_shap_tree_explainer(data, booster):
    shap = pytest.importorskip("shap")
    X, _ = data
    res = compute_shap(booster, X)
    ex = shap.TreeExplainer(booster)
    ref = ex.shap_values(X)
    assert ref.shape == res.values.shape
    assert np.abs(ref - res.values.to_numpy()).max() < 1e-6
    assert abs(float(np.ravel(ex.expected_value)[0]) - res.base_value) < 1e-6


def test_chunking_does_not_change_values(data, booster):
    X, _ = data
    one = compute_shap(booster, X)
    many = compute_shap(booster, X, chunk_rows=701, num_threads=1)  # chunk size that does not divide n
    assert np.array_equal(one.values.to_numpy(), many.values.to_numpy())


def test_every_row_written_keyed_by_row_id(data, booster, tmp_path):
    X, _ = data
    res = compute_shap(booster, X.assign(split="test"))  # extra columns are ignored
    path = write_shap(res, X.index, tmp_path / "shap.parquet")
    back = pd.read_parquet(path)
    assert len(back) == len(X) and back.row_id.tolist() == X.index.tolist()
    assert list(back.columns) == ["row_id", *[f"shap_{c}" for c in X.columns], "base_value", "pred"]
    row = back.set_index("row_id").loc[X.index[123]]
    assert row.filter(like="shap_").sum() + row.base_value == pytest.approx(row.pred, abs=1e-9)
    assert [p.name for p in tmp_path.iterdir()] == ["shap.parquet"]  # no temporary left behind


def test_write_shap_refuses_bad_row_ids(data, booster, tmp_path):
    X, _ = data
    res = compute_shap(booster, X.head(20))
    with pytest.raises(ExplainError, match="19 row ids for 20 rows"):
        write_shap(res, X.index[:19], tmp_path / "shap.parquet")
    with pytest.raises(ExplainError, match="not unique"):
        write_shap(res, [1] * 20, tmp_path / "shap.parquet")
    assert not (tmp_path / "shap.parquet").exists()


def test_additivity_error_when_raw_prediction_is_tampered(data, booster):
    X, _ = data
    contrib = booster.predict(X, pred_contrib=True)
    raw = booster.predict(X, raw_score=True)
    assert assert_additive(contrib[:, :-1], contrib[:, -1], raw, index=X.index) < 1e-9
    tampered = raw.copy()
    tampered[42] += 0.01
    with pytest.raises(AdditivityError, match=rf"row {X.index[42]} \(position 42\)") as e:
        assert_additive(contrib[:, :-1], contrib[:, -1], tampered, index=X.index)
    assert "difference 0.01" in str(e.value)
    nudged = raw + 1e-9  # float noise far below the tolerance is accepted
    assert assert_additive(contrib[:, :-1], contrib[:, -1], nudged) < 1e-8


def test_compute_shap_runs_the_additivity_check(data, booster, monkeypatch):
    """compute_shap compares against the booster's raw prediction: a booster that lies about it is caught."""
    X, _ = data

    class Lying:
        def __init__(self, b): self.b, self.params = b, b.params
        def num_model_per_iteration(self): return 1
        def feature_name(self): return self.b.feature_name()
        def predict(self, X, raw_score=False, **kw):
            out = self.b.predict(X, raw_score=raw_score, **kw)
            return out + 0.5 if raw_score else out

    with pytest.raises(AdditivityError, match="do not add up"):
        compute_shap(Lying(booster), X)
    assert compute_shap(Lying(booster), X, check_additivity=False).values.shape == (len(X), 4)


def test_binary_values_are_log_odds(data):
    X, y = data
    clf = lgb.train({"objective": "binary", "num_leaves": 7, "verbose": -1, "num_threads": 1},
                    lgb.Dataset(X, (y > np.median(y)).astype(int)), num_boost_round=30)
    res = compute_shap(clf, X)
    assert res.output == "log-odds"
    assert np.allclose(1 / (1 + np.exp(-res.pred)), clf.predict(X))


def test_refusals(data, booster):
    X, y = data
    with pytest.raises(ExplainError, match=r"\['hs_m'\]"):
        compute_shap(booster, X.drop(columns="hs_m"))
    multi = lgb.train({"objective": "multiclass", "num_class": 3, "verbose": -1, "num_threads": 1},
                      lgb.Dataset(X, np.digitize(y, np.quantile(y, [1 / 3, 2 / 3]))), num_boost_round=2)
    with pytest.raises(ExplainError, match="multiclass"):
        compute_shap(multi, X)


def test_importance_and_plots(data, booster):
    import matplotlib
    matplotlib.use("Agg")
    X, _ = data
    res = compute_shap(booster, X)
    imp = global_importance(res)
    assert imp.feature[0] == "stw_kn"
    assert imp.mean_abs_shap.is_monotonic_decreasing
    assert imp.mean_abs_shap[0] == pytest.approx(res.values.shap_stw_kn.abs().mean())
    json.dumps(imp.to_dict("records"))
    assert len(plot_importance(res, top=2).axes[0].patches) == 2
    ax = plot_dependence(res, X, "stw_kn", max_scatter=100).axes[0]
    assert ax.collections and type(ax.collections[0]).__name__ == "PolyCollection"  # hexbin, not points
    ax = plot_dependence(res, X.head(3000), "stw_kn").axes[0]
    assert type(ax.collections[0]).__name__ == "PathCollection"  # few rows: a scatter
    with pytest.raises(ExplainError, match="'sog_kn' is not a model feature"):
        plot_dependence(res, X, "sog_kn")
    assert isinstance(res, ShapResult)


@pytest.fixture(scope="module")
def gamma(data):
    "A gamma model: the objective seatrial picks by itself for a strictly positive target."
    X, y = data
    return lgb.train({"objective": "gamma", "num_leaves": 15, "verbose": -1, "num_threads": 1},
                     lgb.Dataset(X, y - y.min() + 1), num_boost_round=30)


def test_gamma_shap_is_labelled_on_the_log_scale(data, gamma, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    X, _ = data
    gamma.save_model(str(tmp_path / "model.txt"))
    loaded = lgb.Booster(model_file=str(tmp_path / "model.txt"))   # as the explain stage reads it
    res = compute_shap(loaded, X, num_threads=1)
    assert (res.output, res.objective) == ("log", "gamma")
    assert np.allclose(np.exp(res.pred), loaded.predict(X))       # the values add up to the log of the prediction
    scale = shap_scale(res, "wind", "kn")
    assert scale.label == "log of wind"
    assert "multiplies the prediction by 1.105 (+10.5%)" in scale.how_to_read
    ax = plot_dependence(res, X, "stw_kn", scale=scale).axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("stw_kn", "SHAP value (log of wind)")   # the old label said "(target units)"
    assert plot_importance(res).axes[0].get_xlabel() == "mean change of the prediction (%)"   # a log model: in percent
    assert plot_importance(global_importance(res)).axes[0].get_xlabel() == "mean change of the prediction (%)"


@pytest.mark.parametrize(("params", "objective", "output"), [
    ({"objective": "poisson"}, "poisson", "log"),
    ({"objective": "tweedie", "tweedie_variance_power": 1.5}, "tweedie", "log"),
    ({"application": "gamma"}, "gamma", "log"),          # an alias: the model text names the objective
    ({"objective": "regression_l2"}, "regression", "raw"),
    ({"objective": "huber"}, "huber", "raw"),
])
def test_output_scale_follows_the_objective(data, params, objective, output):
    X, y = data
    b = lgb.train({**params, "num_leaves": 4, "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y - y.min() + 1), 3)
    assert booster_objective(b) == objective
    assert compute_shap(b, X.head(50), num_threads=1).output == output


def test_scale_labels_and_sentences(data, booster):
    X, _ = data
    raw = shap_scale(compute_shap(booster, X.head(10)), "fuel_t_day", "t/day")
    assert raw.label == "fuel_t_day, t/day" and "+1 adds 1 t/day" in raw.how_to_read
    assert shap_scale("raw").label == "units of the target"
    odds = shap_scale("log-odds", "default")
    assert odds.label == "log-odds of default" and "multiplies the odds by 1.105" in odds.how_to_read
    with pytest.raises(ExplainError, match="'probability' is not known"):
        shap_scale("probability")


def test_threads_default_to_train_choose_threads(data, booster, monkeypatch):
    import seatrial.explain
    X, _ = data
    asked = []
    def choose(n_rows, n_features):
        asked.append((n_rows, n_features))
        return 1
    monkeypatch.setattr(seatrial.explain, "choose_threads", choose)
    compute_shap(booster, X.head(100))
    assert asked == [(100, 4)]
    compute_shap(booster, X.head(100), num_threads=1)   # an explicit count is used as given
    assert asked == [(100, 4)]


def test_contributions_in_target_units_multiply_to_the_prediction():
    from seatrial.explain import contributions_in_target_units
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"stw_kn": rng.uniform(4, 16, 1500), "draught_m": rng.uniform(8, 13, 1500)})
    y = 0.012 * X.stw_kn**3 * (X.draught_m / 11) + rng.gamma(2, 0.5, 1500)
    gam = lgb.train(dict(objective="gamma", num_leaves=7, verbose=-1, num_threads=1), lgb.Dataset(X, y), 30)
    res = compute_shap(gam, X)
    tc = contributions_in_target_units(res.values, res.base_value, log_target=res.output == "log")
    pred = gam.predict(X)
    assert tc.baseline * tc.factor.prod(axis=1).to_numpy() == pytest.approx(pred, rel=1e-6)   # factors x baseline
    assert (tc.percent + 1).to_numpy() == pytest.approx(tc.factor.to_numpy())
    steps = tc.steps(17)
    assert steps.start.iloc[0] == pytest.approx(np.exp(res.base_value)) and steps.end.iloc[-1] == pytest.approx(pred[17])
    assert tc.baseline + steps.change.sum() == pytest.approx(pred[17])                        # in t/day, adding up
    imp = global_importance(res)
    assert imp.mean_abs_percent.to_numpy() == pytest.approx(tc.importance()["shap_" + imp.feature].to_numpy())
    assert plot_importance(imp).axes[0].get_xlabel() == "mean change of the prediction (%)"


def _log_store():
    "The audit store's demo version with its SHAP values made multiplicative (a gamma model's), in the fleet's vocabulary."
    from seatrial.audit.store import AuditStore, VersionData, demo_data
    d = demo_data(3000, seed=2)
    cols = [f"shap_{x}" for x in d.features]
    f = d.frame.copy()
    f[cols] = f[cols] / d.base_value
    base = float(np.log(d.base_value))
    f["pred"] = np.exp(base + f[cols].sum(axis=1))
    f["residual"] = f["target"] - f["pred"]
    return AuditStore.from_data(VersionData(f, d.columns, d.task, d.regimes, d.features, base, values=d.values,
                                            vocabulary=d.vocabulary))


def test_explanations_are_in_the_targets_unit_with_labels_and_legends():
    import panel as pn
    from bokeh.document import Document
    from bokeh.models import Legend
    from seatrial.audit.views import LOWERS, RAISES, ExplanationView
    store = _log_store()
    ex = ExplanationView(store=store, top=4)
    bars = ex.importance().data
    value = ex.importance().vdims[0].name
    assert value == "mean |change of the predicted fuel consumption (%)|"
    f = bars.feature.iloc[-1]
    s = store.frame[f"shap_{f}"].to_numpy()
    assert bars[value].iloc[-1] == pytest.approx(100 * np.abs(np.expm1(s)).mean())        # percent of the prediction
    assert "speed through water" in set(bars.label)                                       # labels, not stw_kn
    store.point = int(store.frame.row_id.iloc[11])
    w = ex.waterfall_steps()
    assert w["from"].iloc[0] == pytest.approx(np.exp(store.base_value))                  # the baseline prediction, t/day
    assert w["to"].iloc[-1] == pytest.approx(store.frame.pred.iloc[11])
    assert any(lbl.startswith("speed through water = ") and lbl.endswith(" kn") for lbl in w.label)
    fall = ex.waterfall()
    labels = {el.label: el for el in fall if isinstance(el, __import__("holoviews").Rectangles)}
    assert set(labels) == {"raises fuel consumption", "lowers fuel consumption"}
    assert (labels["raises fuel consumption"].opts.get().kwargs["color"], labels["lowers fuel consumption"].opts.get().kwargs["color"]) \
        == (RAISES, LOWERS)
    assert {RAISES, LOWERS}.isdisjoint({"#c0392b", "#2e7d32", "red", "green"})            # red/green mean worse/better
    hover = [labels[k].dimension_values("change") for k in labels if len(labels[k])]
    assert any(" t/day (" in str(x) and " %)" in str(x) for h in hover for x in h)       # both t/day and percent
    caption = ex.waterfall_pane()[0].object
    assert "multiplies" in caption and " t/day" in caption and "exp(raw score)" in caption
    trend = ex.residual_trend()
    assert trend.opts.get().kwargs["legend_opts"]["title"] == "Vessel"
    root = pn.panel(pn.pane.HoloViews(trend)).get_root(Document())
    assert root.select({"type": Legend})                                                  # a legend of the vessels
    assert ex.dependence().kdims[0].label == "Speed through water (kn)" or store.feature != "stw_kn"
