"""The overview and explanation views as objects: their parameters, the data they draw, and that it follows the store."""
from __future__ import annotations

import re

import numpy as np
import panel as pn
import pytest
from bokeh.document import Document
from bokeh.models import ColumnDataSource, GlyphRenderer, Image, Quad, Scatter

from seatrial.audit.store import INVERSE_LINK, AuditStore, VersionData, demo_data
from seatrial.audit.views import ExplanationView, OverviewView, inert

BAD = '<script>alert("x")</script>'


@pytest.fixture
def store():
    return AuditStore.from_data(demo_data(5000, seed=3), model="fleet", version="2")


def hostile() -> VersionData:
    "A version whose vessel names, feature names and checks hold markup."
    d = demo_data(3000, seed=1)
    f = d.frame.copy()
    for c in ("vessel_id", "regime_vessel"): f[c] = f[c].cat.rename_categories({"V00": BAD})
    f = f.rename(columns={"shap_hs_m": "shap_<b>hs</b>"})
    checks = [{"name": "<i>odd</i>", "passed": False, "value": None, "threshold": None,
               "meaning": '<img src=x onerror="alert(1)"> must hold'},
              {"name": "plausible", "passed": True, "value": None, "threshold": None, "meaning": "fine"}]
    return VersionData(f, d.columns, d.task, d.regimes, ["<b>hs</b>" if x == "hs_m" else x for x in d.features],
                       d.base_value, d.metrics, checks, d.champion_version, d.champion_source,
                       values=d.values.rename(columns={"hs_m": "<b>hs</b>"}), link="identity")


def render(view):
    "The bokeh models a Panel server would send for `view`."
    return pn.panel(view).get_root(Document())


def sources(root, column):
    return [s for s in root.select({"type": ColumnDataSource}) if column in s.data]


def test_overview_regime_is_a_from_param_widget_over_the_store_regimes(store):
    ov = OverviewView(store=store)
    assert ov.param.regime.objects == store.regimes == ["vessel", "speed_band", "sea_state", "month"]
    assert ov.regime == "vessel"
    select = next(w for w in ov.__panel__().select(pn.widgets.Select))
    assert list(select.options.values()) == store.regimes                 # regimes chosen by name ...
    assert list(select.options) == ["vessel", "speed band", "sea state", "month"]   # ... shown by their labels
    select.value = "sea_state"                         # the widget drives the view's parameter
    assert ov.regime == "sea_state"
    assert list(ov.table().level) == list(store.regime_table("sea_state").level)
    assert "2.5–4" in ov.table_html()


def test_overview_table_follows_the_selection_and_colours_deltas(store):
    ov = OverviewView(store=store)
    assert ov.table().n.sum() == 5000
    store.select_box(-180, 0, 180, 90)
    north = int((store.frame.lat >= 0).sum())
    assert ov.table().n.sum() == north == ov.overall()["n"]
    html = ov.table_html()
    assert f">{north:,}<" in html                     # the "all selected rows" line
    t = ov.table()
    for _, r in t.iterrows():                          # each level's champion delta carries its colour
        word = "better" if r.delta_vs_champion < 0 else "worse"
        assert f'<td class="{word}"' in html.split(f"<td>{inert(r.level)}</td>", 1)[1].split("</tr>")[0]
    store.clear_selection()
    assert ov.table().n.sum() == 5000


def test_overview_without_a_champion_compares_with_the_baseline_only():
    store = AuditStore.from_data(demo_data(2000, champion=False))
    ov = OverviewView(store=store)
    html = ov.table_html()
    assert "No champion yet" in html and "champion (v" not in html and "Δ vs baseline" in html
    assert [layer.label for layer in ov.residual_histogram()][:1] == ["candidate"]
    assert len(ov.residual_histogram()) == 2          # candidate and the zero line
    render(ov)


def test_checks_show_pass_fail_and_meaning():
    ov = OverviewView(store=AuditStore.from_data(hostile()))
    html = ov.checks_html()
    assert "1 of 2 checks passed" in html and "FAIL" in html and "PASS" in html
    assert "must hold" in html and "fine" in html


def test_text_from_data_is_inert():
    store = AuditStore.from_data(hostile())
    ov, ex = OverviewView(store=store), ExplanationView(store=store)
    html = ov.table_html() + ov.checks_html()
    assert "<script>" not in html and "<img" not in html and "<i>odd" not in html
    assert inert(BAD) in html and "&lt;img src=x" in html and "&lt;i&gt;odd&lt;/i&gt;" in html
    store.point = int(store.frame.row_id[store.frame.vessel_id == BAD].iloc[0])
    assert "<b>" not in ex.waterfall_pane()[0].object
    # feature and vessel names reach plots only as data (ticks, tooltips), which Bokeh draws as text
    store.feature = "<b>hs</b>"
    assert "<b>hs</b>" in list(ex.importance().data.feature)
    render(ov); render(ex)


def test_histogram_follows_the_selection_in_place(store):
    ov = OverviewView(store=store)
    h = ov.residual_histogram()
    assert [layer.label for layer in h][:2] == ["candidate", "champion"]
    root = render(ov)
    quads = [r for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, Quad)]
    assert len(quads) == 2
    counts = lambda: sorted(float(np.sum(q.data_source.data["top"])) for q in quads)  # noqa: E731
    before = counts()
    store.select_box(-180, 0, 180, 90)
    h = store.residual_histogram(ov.bins)
    assert counts() == sorted([h.candidate.sum(), h.champion.sum()])    # the same glyphs, new data
    assert counts()[0] < before[0] and counts()[1] < before[1]


def test_importance_follows_the_selection(store):
    ex = ExplanationView(store=store, top=3)
    bars = ex.importance().data
    assert len(bars) == 3 and bars.feature.iloc[-1] == store.features[0]   # largest drawn on top
    store.select_lasso([-180, 0, -180], [-90, -90, 90])
    sel = store.selected
    got = ex.importance().data.set_index("feature").mean_abs_shap
    for f in got.index: assert got[f] == pytest.approx(sel[f"shap_{f}"].abs().mean())


def test_dependence_plot_is_rasterised_when_large(store):
    small = ExplanationView(store=store, rasterize_above=10_000)
    dep = small.dependence()
    assert len(dep) == 5000 and dep.kdims[0].name == store.feature
    np.testing.assert_array_equal(dep.dimension_values(1), store.frame[f"shap_{store.feature}"])
    glyphs = lambda root: {type(r.glyph) for r in root.select({"type": GlyphRenderer})}  # noqa: E731
    assert Scatter in glyphs(render(small._dependence_pane()))
    big = ExplanationView(store=store, rasterize_above=1000)
    assert Image in glyphs(render(big._dependence_pane()))
    store.select_box(-180, 0, 180, 90)
    assert len(big.dependence()) == len(store.selected)
    store.feature = "vessel_type"                     # a categorical feature: one box per level
    assert type(small.dependence()).__name__ == "BoxWhisker"


def test_waterfall_adds_up_to_the_prediction_of_the_clicked_point(store):
    ex = ExplanationView(store=store, top=3)
    assert "Click a point" in ex.waterfall_pane().object
    rid = int(store.frame.row_id.iloc[42])
    store.point = rid
    steps = ex.waterfall_steps()
    assert len(steps) == 4 and steps.label.iloc[-1].endswith("other features")
    assert steps.start.iloc[0] == pytest.approx(store.base_value)
    assert steps.end.iloc[-1] == pytest.approx(steps.attrs["raw"])
    assert INVERSE_LINK[steps.attrs["link"]](steps.end.iloc[-1]) == pytest.approx(store.frame.pred.iloc[42])
    assert (steps.end - steps.start).to_numpy() == pytest.approx(steps.contribution.to_numpy())
    pane = ex.waterfall_pane()
    assert f"Row {rid}" in pane[0].object
    render(pane)


def test_waterfall_of_a_log_link_model_ends_at_the_log_of_the_prediction():
    d = demo_data(2000)
    f = d.frame.copy()
    f["pred"] = np.exp(d.base_value + f.filter(like="shap_").sum(axis=1))
    store = AuditStore.from_data(VersionData(f, d.columns, d.task, d.regimes, d.features, d.base_value, values=d.values))
    assert store.data.link == "log"
    ex = ExplanationView(store=store)
    store.point = 7
    steps = ex.waterfall_steps()
    assert np.exp(steps.end.iloc[-1]) == pytest.approx(f.pred.iloc[7])
    assert "exp(raw score)" in ex.waterfall_pane()[0].object


def test_residuals_over_time_per_vessel_follow_the_selection(store):
    ex = ExplanationView(store=store, period="30D")
    dots = ex.residual_trend().Scatter.I
    assert sorted(set(dots.dimension_values("vessel_id"))) == sorted(store.frame.vessel_id.unique())
    assert dots.dimension_values("rows").sum() == 5000
    store.select_box(-180, 0, 0, 90)
    dots = ex.residual_trend().Scatter.I
    assert set(dots.dimension_values("vessel_id")) == set(store.selected.vessel_id.astype(str))
    assert dots.dimension_values("rows").sum() == len(store.selected)
    # a vessel keeps its colour whatever the selection
    assert ex._colours() == ExplanationView(store=store)._colours()


def test_views_render_as_panel_objects_and_follow_a_new_version(store):
    ov, ex = OverviewView(store=store), ExplanationView(store=store)
    store.point = 3
    for v in (ov, ex):
        assert isinstance(v, pn.viewable.Viewer)
        assert isinstance(v.__panel__(), pn.Column)
        assert render(v) is not None
    other = demo_data(1500, seed=9)
    store.set_data(other)                            # the store opens another version
    assert ov.table().n.sum() == 1500 and store.point is None
    assert "Click a point" in ex.waterfall_pane().object
    assert len(ex.dependence()) == 1500


def test_a_classifier_is_judged_by_log_loss_and_explained_in_log_odds():
    d = demo_data(3000, champion=False)
    f = d.frame.copy()
    raw = (f.filter(like="shap_").sum(axis=1) + d.base_value - 60) / 20
    f["pred"] = 1 / (1 + np.exp(-raw))
    f["baseline_pred"] = 0.5
    f["target"] = (np.random.default_rng(0).uniform(size=len(f)) < f["pred"]).astype(float)
    f["residual"] = f["target"] - f["pred"]
    f[[c for c in f if c.startswith("shap_")]] /= 20
    store = AuditStore.from_data(VersionData(f, d.columns, "classification", d.regimes, d.features, (d.base_value - 60) / 20,
                                             values=d.values))
    assert store.data.link == "logit"
    ov, ex = OverviewView(store=store), ExplanationView(store=store)
    assert "log loss candidate" in ov.table_html() and "logloss" in ov.table().columns
    store.point = 11
    steps = ex.waterfall_steps()
    assert 1 / (1 + np.exp(-steps.end.iloc[-1])) == pytest.approx(f.pred.iloc[11])
    assert "log-odds" in ex.waterfall_pane()[0].object


def test_overview_page_draws_with_bokeh_directly(store):
    """A served session builds the histogram as one plain Bokeh plot (HoloViews' plotting cost most of a first page): axis
    titles with the target's unit, x fixed to the version's bins so selections compare, y following the selection."""
    from bokeh.models import DataRange1d, Plot, Range1d
    ov = OverviewView(store=store)
    layout = pn.panel(ov)
    root = layout.get_root(Document())
    assert not layout.select(pn.pane.HoloViews) and layout.select(pn.pane.Bokeh)
    fig = root.select_one({"type": Plot})
    assert sorted(r.name for r in fig.renderers) == ["candidate", "champion"]
    assert fig.below[0].axis_label == "Residual, observed − predicted (t/day)" and fig.left[0].axis_label == "Test rows"
    assert isinstance(fig.x_range, Range1d) and isinstance(fig.y_range, DataRange1d)
    x, total = (fig.x_range.start, fig.x_range.end), fig.renderers[0].data_source.data["top"].sum()
    try:
        store.select_box(-180, 0, 180, 90)
        assert (fig.x_range.start, fig.x_range.end) == x
        assert 0 < fig.renderers[0].data_source.data["top"].sum() < total
    finally:
        store.clear_selection()

def test_overview_reads_in_units_and_labels_with_bands_in_their_order(store):
    "Issue 10: the error carries the target's unit, regimes and checks their labels, speed bands their unit and order."
    ov = OverviewView(store=store, regime="speed_band")
    html = ov.table_html()
    assert "RMSE candidate (t/day)" in html and "Δ vs champion (t/day)" in html and "<th>Speed band</th>" in html
    assert "fuel consumption" in html                                  # what the RMSE is of
    levels = ["0–8 kn", "8–11 kn", "11–14 kn", "14–30 kn"]
    assert [html.index(f"<td>{lv}</td>") for lv in levels] == sorted(html.index(f"<td>{lv}</td>") for lv in levels)
    assert " t/day (" in html and " %)" in html                        # differences: unit and relative change
    assert ">5,000<" in html and not re.search(r"\d\.\d{6,}", html)     # no float with all its digits
    checks = ov.checks_html()
    assert "Monotone in speed through water" in checks and 'title="monotone&#95;stw&#95;kn"' in checks
