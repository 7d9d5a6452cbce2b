"""The audit map in a real browser (Debian's chromium driven by Playwright): the default view's colours, the hover, a click's
details card and the mouse wheel, against a Panel server on 127.0.0.1 serving the map of a demo version (30,000 test
points: rasterised by datashader) with the demo fleet's labels and units."""
from __future__ import annotations

import io
import re
import os
import sys

import numpy as np
import pytest
from loopback import ARTIFACTS, free_port, headless_chromium, listening

SERVER = r"""
import sys
import panel as pn
from seatrial.audit.map import MapView, warm_up
from seatrial.audit.serve import _serve_locally
from seatrial.audit.store import AuditStore, demo_data
_serve_locally()
warm_up()
data = demo_data(30_000, seed=4)
def page():
    view = MapView(store=AuditStore.from_data(data, model="fleet", version="2"))
    # a page longer than the window, as the app's Review tab is: the wheel must scroll it
    return pn.Column(pn.Column(view, css_classes=["map-view"]), pn.Spacer(height=1500), sizing_mode="stretch_width")
port = int(sys.argv[1])
pn.serve({"/": page}, port=port, address="127.0.0.1", websocket_origin=[f"127.0.0.1:{port}"], show=False)
"""


@pytest.fixture(scope="module")
def map_url():
    port = free_port()
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    with listening([sys.executable, "-c", SERVER, str(port)], port, "the map server", timeout=180, env=env) as url:
        yield url


def pixels(page, box) -> np.ndarray:
    "RGB pixels of a region of the page, as the reviewer sees them."
    from PIL import Image
    png = page.screenshot(clip=box)
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_the_map_reads_for_a_reviewer(map_url):
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(60_000)
        elsewhere: list[str] = []   # offline: nothing fetched from anywhere but this server
        page.on("request", lambda r: None if r.url.startswith((map_url, "data:", "blob:")) else elsewhere.append(r.url))
        page.goto(map_url + "/")
        canvas = page.locator(".map-view canvas").first
        canvas.wait_for()
        page.wait_for_timeout(2500)   # the rasters sent after the first layout
        box = canvas.bounding_box()
        frame = {"x": box["x"] + 60, "y": box["y"] + 10, "width": box["width"] * 0.6, "height": box["height"] - 120}
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "map.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 760})

        # the default view: pale points near zero, strong red and blue for large errors, not black lines
        rgb = pixels(page, frame)
        r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
        black = (rgb.max(axis=-1) < 70).mean()
        red = (r > 150) & (g < 110) & (b < 110)
        blue = (b > 170) & (r < 120)
        import colorcet
        pale = np.array([[int(c[i:i + 2], 16) for i in (1, 3, 5)] for c in colorcet.palette["coolwarm"][112:144]])
        near_pale = (np.abs(rgb[:, :, None, :] - pale[None, None]).max(axis=-1) <= 6).any(axis=-1)
        assert black < 0.02, f"{black:.1%} of the map is black"
        assert red.sum() > 30 and blue.sum() > 30, (red.sum(), blue.sum())
        assert near_pale.sum() > 30, near_pale.sum()

        # hover on a strong pixel: what the pixel holds, in units; nowhere "NaN"
        k = 7   # the red pixel with most red around it: inside a point's disc, not at its rim
        c = np.pad(red.astype(int), k // 2).cumsum(0).cumsum(1)
        c = np.pad(c, ((1, 0), (1, 0)))
        around = c[k:, k:] - c[:-k, k:] - c[k:, :-k] + c[:-k, :-k]
        yy, xx = np.unravel_index(np.argmax(np.where(red, around, -1)), red.shape)
        x, y = frame["x"] + xx + 0.5, frame["y"] + yy + 0.5
        page.mouse.move(x - 5, y - 5)
        page.mouse.move(x, y, steps=5)
        tip = page.locator(".bk-tooltip-content").first
        tip.wait_for()
        page.wait_for_timeout(700)
        text = tip.inner_text()
        assert "test points here" in text and "t/day" in text and "NaN" not in text, text
        page.mouse.move(frame["x"] + 3, frame["y"] + 3, steps=5)   # the sea at the corner: an empty pixel
        page.wait_for_timeout(500)
        assert "NaN" not in page.locator(".bk-tooltip-content").first.inner_text()

        # a click: the details card beside the map, in the reviewer's words
        page.mouse.click(x, y)
        card = page.locator(".seatrial-point").first
        card.wait_for()
        details = card.inner_text()
        for words in ("Vessel", "V", "UTC", "Observed fuel consumption", "t/day", "Residual", "Largest contributions"):
            assert words in details, details
        assert "nan" not in details.lower()
        assert "all selected" in page.get_by_text(re.compile(r"test points, ")).first.inner_text()   # a click picks, never filters
        page.screenshot(path=str(ARTIFACTS / "map-clicked.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 760})

        # the wheel over the map scrolls the page; the map keeps its view
        page.mouse.move(box["x"] + box["width"] * 0.4, box["y"] + box["height"] * 0.5)
        before = page.evaluate("window.scrollY")
        page.mouse.wheel(0, 500)
        page.wait_for_timeout(800)
        assert page.evaluate("window.scrollY") > before
        assert elsewhere == []
