"""The audit map as objects: shipped land outlines, plain and rasterised points, the colour widget, and selections and
taps that reach the store (through the real AuditStore, on demo data and on a project built by the real pipeline)."""
from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pandas as pd
import pytest

pn = pytest.importorskip("panel")
pytest.importorskip("datashader")

from bokeh.document import Document  # noqa: E402
from bokeh.models import ColorBar, GlyphRenderer, Image, MultiPolygons, Patches, Plot, Scatter  # noqa: E402
from matplotlib.path import Path as Polygon  # noqa: E402

from seatrial.audit.map import MapData, MapView, land_outlines, warm_up  # noqa: E402
from seatrial.audit.store import AuditStore, VersionData, demo_data  # noqa: E402
from seatrial.display import number, when  # noqa: E402



@pytest.fixture(scope="module")
def small_data():
    return demo_data(4000, seed=1)


@pytest.fixture(scope="module")
def large_data():
    return demo_data(60_000, seed=2)


def render(view: MapView):
    "(Bokeh model tree, Panel layout) of a view, as a browser session would get them."
    layout = view.__panel__()
    return layout.get_root(Document()), layout


def glyphs(root, kind) -> list[int]:
    "Number of data rows of each glyph of a kind in the Bokeh tree."
    return [max((len(v) for v in r.data_source.data.values()), default=0)
            for r in root.select({"type": GlyphRenderer}) if isinstance(r.glyph, kind)]


def layer(root, name: str):
    "The data of the map's layer of that name ('points', 'tracks', 'land', 'outline', 'marker')."
    return root.select_one({"type": GlyphRenderer, "name": name}).data_source.data


def drawn(view: MapView, root) -> str | None:
    "The value column the points layer of the Bokeh tree shows (None when it shows another's values)."
    col = view.value_column()
    got = layer(root, "points")
    if view.large:   # the points image holds the raster of that column
        want = view.raster(col)["image"][0]
        return col if np.array_equal(got["image"][0], want, equal_nan=True) else None
    v = view.store.frame[col].to_numpy(dtype=float)
    want = np.sort(np.abs(v[np.isfinite(v)]))   # every finite value, smallest |value| first
    return col if np.array_equal(np.abs(np.asarray(got["value"], dtype=float)), want) else None


def test_land_outlines_are_shipped_and_cover_land():
    raw = json.loads(files("seatrial").joinpath("data", "ne_110m_land.json").read_text(encoding="utf-8"))
    assert raw["licence"].startswith("public domain") and "Natural Earth" in raw["source"]
    land = land_outlines()
    rings = [np.asarray(r) for poly in land["polygons"] for r in poly]
    assert len(rings) > 250 and all(len(r) >= 4 and (r[0] == r[-1]).all() for r in rings)
    assert all(-180 <= r[:, 0].min() and r[:, 0].max() <= 180 and -90 <= r[:, 1].min() <= r[:, 1].max() <= 90 for r in rings)
    chad, mid_atlantic = (18.7, 15.0), (-30.0, 20.0)
    chad_rings = [r for r, name in ((poly[0], n) for poly, n in zip(land["polygons"], land["names"])) if name == "Chad"]
    assert Polygon(np.asarray(chad_rings[0])).contains_point(chad)
    assert not any(Polygon(r).contains_point(mid_atlantic) for r in rings)
    exteriors = [Polygon(np.asarray(poly[0])) for poly in land["polygons"]]
    points = [(28.2, -29.5), (24.0, -29.0), (160.0, -35.0), (-150.0, -10.0)]   # Lesotho, South Africa, two seas
    assert [any(e.contains_point(p) for e in exteriors) for p in points] == [True, True, False, False]


def test_small_frame_draws_every_point(small_data):
    store = AuditStore.from_data(small_data, model="fleet", version="2")
    view = MapView(store=store)
    assert not view.large
    root, _ = render(view)
    assert len(small_data.frame) in glyphs(root, Scatter) and not glyphs(root, Image)
    assert glyphs(root, (MultiPolygons, Patches))   # the land underneath
    assert drawn(view, root) == "residual"
    [bar] = root.select({"type": ColorBar})
    assert bar.title.startswith("Residual, observed − predicted (t/day), clipped at ±")
    assert "4,000 test points, all selected" in view._status()


def test_large_frame_is_rasterised(large_data):
    store = AuditStore.from_data(large_data, model="fleet", version="2")
    view = MapView(store=store)
    assert view.large
    root, _ = render(view)
    assert glyphs(root, Image) and max(glyphs(root, Scatter)) <= 1   # no point glyphs; the tap marker (empty)
    assert len(glyphs(root, Image)) == 2 and drawn(view, root) == "residual"   # tracks and points, each one image
    tracks = layer(root, "tracks")["image"][0]
    assert tracks.any() and not tracks.all()
    # a zoom re-aggregates to the new range, at the plot's size, without sampling: every point in range counts
    img = view.raster("residual", x_range=(-180.0, 180.0), y_range=(-90.0, 90.0), width=200, height=100)
    assert img["image"][0].shape == (100, 200) and img["n"][0].sum() >= len(large_data.frame)


@pytest.mark.parametrize("which", ["small", "large"])
def test_colour_widget_changes_the_plotted_value(which, small_data, large_data):
    data = small_data if which == "small" else large_data
    store = AuditStore.from_data(data, model="fleet", version="2")
    view = MapView(store=store)
    root, layout = render(view)
    widget = next(w for w in layout.select(pn.widgets.Select) if w.name == "Colour by")
    assert set(widget.options.values()) == {"residual", "shap", "error_diff"}
    assert drawn(view, root) == "residual"
    widget.value = "error_diff"
    assert view.colour == "error_diff" and drawn(view, root) == "error_diff"   # the same glyphs, new data
    assert root.select_one({"type": ColorBar}).title.startswith("|Error| − |champion's error| (t/day), red: candidate worse")
    widget.value = "shap"
    assert drawn(view, root) == f"shap_{store.feature}"
    store.feature = "hs_m"
    assert drawn(view, root) == "shap_hs_m"


def test_no_champion_no_error_difference():
    store = AuditStore.from_data(demo_data(500, champion=False))
    view = MapView(store=store)
    assert set(view.param.colour.objects.values()) == {"residual", "shap"}


@pytest.mark.parametrize("which", ["small", "large"])
def test_box_and_lasso_select_in_the_store(which, small_data, large_data):
    data = small_data if which == "small" else large_data
    store = AuditStore.from_data(data, model="fleet", version="2")
    view = MapView(store=store)
    render(view)
    f = store.frame
    lon, lat = f.lon.to_numpy(), f.lat.to_numpy()

    view.streams["box"].event(bounds=(-60.0, -20.0, 60.0, 40.0))
    inside = (lon >= -60) & (lon <= 60) & (lat >= -20) & (lat <= 40)
    assert 0 < inside.sum() < len(f)
    np.testing.assert_array_equal(np.sort(store.selection), np.sort(f.row_id.to_numpy()[inside]))
    assert view.outline is not None

    tri = np.array([[-100.0, -40.0], [100.0, -40.0], [0.0, 60.0]])
    view.streams["lasso"].event(geometry=tri)
    want = f.row_id.to_numpy()[Polygon(tri).contains_points(np.column_stack([lon, lat]))]
    np.testing.assert_array_equal(np.sort(store.selection), np.sort(want))
    assert len(view.outline[0]) == 4   # closed triangle

    view.clear()
    assert store.selection is None and view.outline is None
    # a selection cleared elsewhere (another view) takes the outline away too
    view.streams["box"].event(bounds=(-60.0, -20.0, 60.0, 40.0))
    store.clear_selection()
    assert view.outline is None


def test_tap_picks_the_nearest_point(small_data):
    store = AuditStore.from_data(small_data, model="fleet", version="2")
    view = MapView(store=store)
    render(view)
    f = store.frame
    for i in (0, 1234, len(f) - 1):
        row = f.iloc[i]
        view.streams["tap"].event(x=row.lon + 1e-7, y=row.lat - 1e-7)
        assert store.point == row.row_id
    # brute force agrees with the k-d tree at an arbitrary spot
    x, y = 12.345, 6.789
    d2 = (f.lon - x) ** 2 + (f.lat - y) ** 2
    view.streams["tap"].event(x=x, y=y)
    assert store.point == f.row_id[d2.idxmin()]


def test_tap_far_from_every_point_keeps_the_pick():
    store = AuditStore.from_data(demo_data(300), model="fleet", version="2")
    view = MapView(store=store)
    render(view)
    view.streams["range"].event(x_range=(0.0, 1.0), y_range=(0.0, 1.0))   # zoomed in: the pick radius is 0.03 degrees
    store.point = None
    far = MapData(store.frame, store.columns)
    view.streams["tap"].event(x=far.xlim[1] + 50, y=0.0)
    assert store.point is None


def test_map_tiles_option_converts_selections_back_to_degrees(small_data):
    store = AuditStore.from_data(small_data, model="fleet", version="2")
    view = MapView(store=store, tiles="https://tile.openstreetmap.org/{Z}/{X}/{Y}.png")
    root, _ = render(view)   # the browser would fetch the tiles; the server never does
    assert view.data().mercator and abs(view.data().xlim[0]) > 1e5
    from holoviews.util.transform import lon_lat_to_easting_northing
    (x0, x1), (y0, y1) = lon_lat_to_easting_northing(np.array([-60.0, 60.0]), np.array([-20.0, 40.0]))
    view.streams["box"].event(bounds=(x0, y0, x1, y1))
    f = store.frame
    inside = f.lon.between(-60, 60) & f.lat.between(-20, 40)
    np.testing.assert_array_equal(np.sort(store.selection), np.sort(f.row_id[inside].to_numpy()))
    assert root is not None


def test_warm_up_and_render_in_a_fresh_process():
    "A server calls warm_up before any plot exists, and may never call hv.extension: both must work."
    code = ("from bokeh.document import Document\n"
            "from seatrial.audit.map import MapView, warm_up\n"
            "from seatrial.audit.store import AuditStore, demo_data\n"
            "warm_up()\n"
            "for n in (500, 30_000):\n"
            "    MapView(store=AuditStore.from_data(demo_data(n))).__panel__().get_root(Document())\n"
            "print('ok')\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
    assert warm_up() < 60


def test_on_a_project_built_by_the_pipeline(fleet_base):
    store = AuditStore(root=fleet_base, model="fleet", version="2")
    view = MapView(store=store)
    root, _ = render(view)
    f, c = store.frame, store.columns
    assert len(f) > 0 and not view.large and len(f) in glyphs(root, Scatter)
    lon, lat = f[c["lon"]].to_numpy(), f[c["lat"]].to_numpy()
    x0, x1 = np.percentile(lon, [20, 60])
    y0, y1 = np.percentile(lat, [20, 80])
    view.streams["box"].event(bounds=(x0, y0, x1, y1))
    inside = (lon >= x0) & (lon <= x1) & (lat >= y0) & (lat <= y1)
    np.testing.assert_array_equal(np.sort(store.selection), np.sort(f.row_id.to_numpy()[inside]))
    assert 0 < len(store.selected) < len(f)
    row = f.iloc[len(f) // 2]
    view.streams["tap"].event(x=row[c["lon"]], y=row[c["lat"]])
    assert store.point == row.row_id


def test_plot_events_reach_the_store_and_sessions_share_the_aggregates(large_data):
    "The Bokeh figure's own events (as the browser sends them) select; two sessions on a version share its rasters."
    from bokeh.events import RangesUpdate, SelectionGeometry, Tap
    store = AuditStore.from_data(large_data, model="fleet", version="2")
    view, other = MapView(store=store), MapView(store=AuditStore.from_data(large_data, model="fleet", version="2"))
    (root, _), (root2, _) = render(view), render(other)
    fig = root.select_one({"type": Plot})
    for name in ("points", "tracks"):   # made once per version, range and size: the very same arrays
        assert layer(root, name)["image"][0] is layer(root2, name)["image"][0]
    f = store.frame
    fig._trigger_event(SelectionGeometry(fig, geometry={"type": "rect", "x0": -60.0, "x1": 60.0, "y0": -20.0, "y1": 40.0}))
    inside = f.lon.between(-60, 60) & f.lat.between(-20, 40)
    np.testing.assert_array_equal(np.sort(store.selection), np.sort(f.row_id[inside].to_numpy()))
    assert other.store.selection is None and np.isfinite(layer(root, "outline")["ox"]).sum() == 5
    before = layer(root, "points")["image"][0]
    fig._trigger_event(RangesUpdate(fig, x0=-20.0, x1=20.0, y0=-10.0, y1=10.0))   # a zoom re-aggregates that range
    assert layer(root, "points")["image"][0] is not before and view.streams["range"].x_range == (-20.0, 20.0)
    row = f.iloc[7]
    selected = store.selection
    # a click with box select as the drag tool: Bokeh reports a box of no area beside the tap; it selects nothing
    fig._trigger_event(SelectionGeometry(fig, final=True, geometry={"type": "rect", "x0": float(row.lon), "x1": float(row.lon),
                                                                    "y0": float(row.lat), "y1": float(row.lat)}))
    fig._trigger_event(Tap(fig, x=float(row.lon), y=float(row.lat)))
    assert store.point == row.row_id and store.selection is selected


def luminance(colour: str) -> float:
    r, g, b = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


@pytest.mark.parametrize("which", ["small", "large"])
def test_colours_are_pale_near_zero_strong_for_large_errors_and_say_where_they_are_clipped(which, small_data, large_data):
    store = AuditStore.from_data(small_data if which == "small" else large_data, model="fleet", version="2")
    view = MapView(store=store)
    root, _ = render(view)
    bar = root.select_one({"type": ColorBar})
    pal = bar.color_mapper.palette
    assert luminance(pal[len(pal) // 2]) > 0.85 and max(luminance(pal[0]), luminance(pal[-1])) < 0.5
    clip = np.percentile(np.abs(store.frame.residual), 98)
    assert (bar.color_mapper.low, bar.color_mapper.high) == (pytest.approx(-clip), pytest.approx(clip))
    assert bar.title == f"Residual, observed − predicted (t/day), clipped at ±{number(clip)} (98th percentile)"
    assert bar.orientation == "horizontal" and bar in root.select_one({"type": Plot}).below   # its title above the bar
    assert root.select_one({"type": Plot}).below[0].axis_label == "Longitude (°E)"


def test_a_pixel_shows_its_largest_error_and_a_lone_point_stays_visible():
    rng = np.random.default_rng(0)
    n = 25_000
    lon, lat = rng.normal(0, 0.5, n), rng.normal(0, 0.5, n)
    residual = rng.normal(0, 0.1, n)
    lon[0], lat[0], residual[0] = 0.0, 0.0, 50.0      # a large error among small ones
    lon[1], lat[1], residual[1] = 60.0, 30.0, -30.0   # a point alone, far from the rest
    f = pd.DataFrame({"row_id": np.arange(n), "time": pd.Timestamp("2024-01-01", tz="UTC"), "ship": pd.Categorical(["a"] * n),
                      "lat": lat, "lon": lon, "target": 10.0 + residual, "pred": 10.0, "residual": residual, "shap_x": 0.0})
    data = VersionData(f, {"time": "time", "entity": "ship", "lat": "lat", "lon": "lon"}, "regression", {}, ["x"], 10.0,
                       link="identity")
    view = MapView(store=AuditStore.from_data(data))
    root, _ = render(view)
    img = layer(root, "points")
    value, count, mean = img["image"][0], img["n"][0], img["mean"][0]
    assert np.nanmax(value) == 50.0   # drawn on top, not averaged away with its neighbours
    lone = np.isclose(value, -30.0)
    assert lone.sum() >= 5   # spread to a disc: one point is more than one pixel
    assert set(count[lone]) == {1} and set(mean[lone]) == {-30.0}   # its hover: one point, its value
    assert (count >= 0).all() and np.isnan(mean[count == 0]).all() and np.isfinite(mean[count > 0]).all()


@pytest.mark.parametrize("which", ["small", "large"])
def test_hover_tells_values_with_units_and_never_nan(which, small_data, large_data):
    "Bokeh writes 'NaN' for a NaN before any formatter sees it: the hover reads only columns without NaN, in t/day."
    from bokeh.models import CustomJSHover, HoverTool
    store = AuditStore.from_data(small_data if which == "small" else large_data, model="fleet", version="2")
    view = MapView(store=store)
    root, _ = render(view)
    hover = root.select_one({"type": HoverTool})
    fields = {v.split("{")[0] for _, v in hover.tooltips if v.startswith("@")}
    data = layer(root, "points")
    assert all(not np.isnan(np.asarray(data[f[1:]][0] if which == "large" else data[f[1:]], dtype=float)).any() for f in fields)
    if which == "large":
        assert hover.tooltips == [("test points here", "@n{count}"), ("mean residual", "@n{mean}"),
                                  ("largest residual", "@n{largest}")]
        assert np.isnan(data["mean"][0]).any()   # empty pixels: their mean is looked up and written as a dash
    else:
        assert hover.tooltips[0] == ("Residual", "@value{signed}")
    fmt = hover.formatters["@n" if which == "large" else "@value"]
    assert isinstance(fmt, CustomJSHover) and fmt.args["unit"] == " t/day" and 'return "–"' in fmt.code


def test_the_wheel_scrolls_the_page_until_wheel_zoom_is_turned_on(small_data):
    from bokeh.models import WheelZoomTool
    root, _ = render(MapView(store=AuditStore.from_data(small_data)))
    fig = root.select_one({"type": Plot})
    assert any(isinstance(t, WheelZoomTool) for t in fig.toolbar.tools) and fig.toolbar.active_scroll is None


def test_a_click_shows_the_point_in_the_reviewers_words(small_data):
    store = AuditStore.from_data(small_data, model="fleet", version="2")
    view = MapView(store=store)
    _, layout = render(view)
    card = next(p for p in layout.select(pn.pane.HTML) if "seatrial-point" in str(p.object))
    assert "Click a point" in card.object
    row = store.frame.iloc[321]
    view.streams["tap"].event(x=row.lon, y=row.lat)
    html = card.object
    assert f"<th style='text-align:left;font-weight:normal;color:#555;padding-right:8px'>Vessel</th><td>{row.vessel_id}</td>" in html
    assert when(row.time) in html and "UTC" in html
    assert f"<td>{number(row.target)} t/day</td>" in html and f"<td>{number(row.pred)} t/day</td>" in html
    assert f"<td>{number(row.residual, signed=True)} t/day</td>" in html
    shap = {f: row[f"shap_{f}"] for f in small_data.features}
    top = sorted(shap, key=lambda f: -abs(shap[f]))[:3]
    labels = {"stw_kn": "Speed through water", "hs_m": "Significant wave height", "draught_m": "Draught",
              "days_since_drydock": "Days since dry dock", "vessel_type": "Vessel type"}
    assert all(f">{labels[f]}</th><td>{number(shap[f], signed=True)} t/day</td>" in html for f in top)
    assert "nan" not in html.lower() and "shap_" not in html
    # a model on the log scale: its SHAP values are not t/day, and the card says so
    log = MapView(store=AuditStore.from_data(dataclasses.replace(small_data, link="log")))
    assert "Largest contributions (log scale)" in log.details(row.row_id)
