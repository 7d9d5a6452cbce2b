"""The audit map as objects: shipped land outlines, plain and rasterised points, the colour widget, and selections and
taps that reach the store (through the real AuditStore, on demo data and on a project built by the real pipeline)."""
from __future__ import annotations

import json
import subprocess
import sys
from importlib.resources import files

import numpy as np
import pytest

pn = pytest.importorskip("panel")
hv = pytest.importorskip("holoviews")
pytest.importorskip("datashader")

from bokeh.document import Document  # noqa: E402
from bokeh.models import ColorBar, GlyphRenderer, Image, MultiPolygons, Patches, Scatter  # noqa: E402
from matplotlib.path import Path as Polygon  # noqa: E402

from seatrial.audit.map import MapData, MapView, land_outlines, warm_up  # noqa: E402
from seatrial.audit.store import AuditStore, demo_data  # noqa: E402

hv.extension("bokeh", logo=False)


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


def plotted(layout, root) -> list:
    "The HoloViews elements currently drawn by the view's map."
    hvpane = layout.select(pn.pane.HoloViews)[0]
    plot = hvpane._plots[root.ref["id"]][0]
    return [p.current_frame for p in plot.traverse(lambda p: p) if getattr(p, "current_frame", None) is not None
            and not isinstance(p.current_frame, hv.Overlay)]


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
    root, layout = render(view)
    assert len(small_data.frame) in glyphs(root, Scatter) and not glyphs(root, Image)
    assert glyphs(root, (MultiPolygons, Patches))   # the land underneath
    points = [e for e in plotted(layout, root) if isinstance(e, hv.Points) and len(e) == len(small_data.frame)]
    assert len(points) == 1 and points[0].vdims[0].name == "residual"
    assert "4,000 test points, all selected" in view._status(store.frame, store.selection)


def test_large_frame_is_rasterised(large_data):
    store = AuditStore.from_data(large_data, model="fleet", version="2")
    view = MapView(store=store)
    assert view.large
    root, layout = render(view)
    assert glyphs(root, Image) and max(glyphs(root, Scatter)) <= 1   # no point glyphs; the tap marker (empty)
    images = [e for e in plotted(layout, root) if isinstance(e, hv.Image)]
    assert {e.vdims[0].name for e in images} == {"residual", "track"}
    # a zoom re-aggregates to the new range, at the plot's size, without sampling: every point in range counts
    img = view.points_raster(x_range=(-180.0, 180.0), y_range=(-90.0, 90.0), width=200, height=100)
    assert img.data.sizes == {"y": 100, "x": 200}
    assert np.isfinite(img.dimension_values("residual")).sum() > 0


@pytest.mark.parametrize("which", ["small", "large"])
def test_colour_widget_changes_the_plotted_value(which, small_data, large_data):
    data = small_data if which == "small" else large_data
    store = AuditStore.from_data(data, model="fleet", version="2")
    view = MapView(store=store)
    root, layout = render(view)
    widget = next(w for w in layout.select(pn.widgets.Select) if w.name == "Colour by")
    assert set(widget.options.values()) == {"residual", "shap", "error_diff"}
    kind = hv.Points if which == "small" else hv.Image

    def value_dims():
        return {e.vdims[0].name for e in plotted(layout, root) if isinstance(e, kind) and len(e)} - {"track"}

    assert value_dims() == {"residual"}
    widget.value = "error_diff"
    assert view.colour == "error_diff" and value_dims() == {"error_diff"}
    assert [bar.title for bar in root.select({"type": ColorBar})] == ["|error| − |champion error|"]
    widget.value = "shap"
    assert value_dims() == {f"shap_{store.feature}"}
    store.feature = "hs_m"
    assert value_dims() == {"shap_hs_m"}


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
