"""The Explanations tab in a real browser (Debian's chromium driven by Playwright): labels, units and the waterfall legend."""
from __future__ import annotations

import os

import pytest
from conftest import SEATRIAL
from loopback import ARTIFACTS, browser_or_skip, free_port, headless_chromium, listening

@pytest.fixture
def explain_server(fleet_project):
    "`seatrial audit` in single-user mode on a free loopback port, over a copy of the fleet project."
    browser_or_skip()
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "SEATRIAL_CREDENTIALS")}
    with listening([str(SEATRIAL), "--root", str(fleet_project), "audit", "--port", str(port)], port, "seatrial audit",
                   cwd=fleet_project, env=env) as url:
        yield url


def _tab(page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def test_explanations_tab_speaks_in_labels_units_and_a_legend(explain_server):
    url = explain_server
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1600, "height": 1100})
        page.set_default_timeout(90_000)
        page.goto(url + "/")
        page.wait_for_selector("text=fleet version 2")
        _tab(page, "Review")
        canvas = page.locator(".map-view canvas").first
        canvas.wait_for()
        page.wait_for_timeout(1500)
        box = canvas.bounding_box()
        caption = page.locator("text=with no feature known the model predicts")
        # click along the map until a test point is near enough to be chosen (the lanes cross the North Atlantic)
        for fx, fy in [(x / 10, y / 8) for y in range(2, 7) for x in range(2, 9)]:
            page.mouse.click(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy)
            page.wait_for_timeout(700)
            _tab(page, "Explanations")
            try:
                caption.first.wait_for(timeout=4000)
                break
            except Exception:   # no point under that click: try the next place
                _tab(page, "Review")
        else:
            raise AssertionError("no click on the map chose a test point")
        page.locator(".explanation-view canvas").first.wait_for()
        page.wait_for_timeout(2500)   # the plots draw after their data arrive
        for words in ("What drives the predicted fuel consumption", "Residuals over time per vessel",
                      "step by step, to the prediction"):   # headings, and the waterfall caption
            page.get_by_text(words).first.wait_for()
        caption_text = caption.first.inner_text()
        assert " t/day" in caption_text and "PosixPath" not in caption_text   # in the target's unit
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "explanations.png"), full_page=True)
        # Bokeh draws plot text on canvases; its models hold what the page shows: axis titles, ticks and legends
        shown = page.evaluate("""() => {
            const out = [];
            for (const doc of Bokeh.documents) for (const m of doc.all_models) {
                for (const k of ['axis_label', 'label', 'title', 'text']) {
                    const v = m[k]; if (typeof v === 'string') out.push(v);
                    else if (v && typeof v.value === 'string') out.push(v.value);
                }
                if (m.major_label_overrides) for (const v of m.major_label_overrides.values()) out.push(String(v));
            }
            return out;
        }""")
        joined = "\n".join(shown)
        assert "raises fuel consumption" in shown and "lowers fuel consumption" in shown     # the waterfall's legend
        assert "Predicted fuel consumption (t/day)" in shown                                  # its axis
        assert "Vessel" in shown                                                              # the vessels' legend
        assert any(s.startswith("Mean |change of the predicted fuel consumption (%)|") or
                   s.startswith("mean |change of the predicted fuel consumption (%)|") for s in shown), joined
        assert "speed through water" in joined and " kn" in joined                           # labels, with units
