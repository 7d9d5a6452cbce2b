"""What a reviewer reads and signs, in a real browser: units and labels on the Review and Decision tabs, the decision's
summary, the title and History following a decision at once, and rollback offered only when there is somewhere to go back to.
Its screenshots (review.png, decision.png, history.png in tests/artifacts/) are the README's."""
from __future__ import annotations

import re
import time

import pytest
from conftest import mlflow_client
from loopback import ARTIFACTS, headless_chromium
from test_browser import _login, _tab, serve_audit

RAW_FLOAT = re.compile(r"\d\.\d{6,}")   # a float written with all its digits
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")


@pytest.fixture
def review_page(fleet_project):
    with serve_audit(fleet_project) as url, headless_chromium() as b:
        page = _login(b, url, "ana")
        yield fleet_project, page


def _text(page, selector: str) -> str:
    node = page.locator(selector).first
    node.wait_for()
    return node.inner_text()


def _shown(page, selector: str) -> bool:
    "Is something matching `selector` on the page (text selectors reach into Panel's shadow roots)?"
    return page.locator(selector).count() > 0


def _until(page, check, what: str, seconds: float = 60) -> None:
    "Wait, without reloading, until `check()` holds."
    deadline = time.time() + seconds
    while not check():
        if time.time() > deadline:
            raise AssertionError(f"{what} did not happen within {seconds:.0f} s (no reload was made)")
        page.wait_for_timeout(250)


def test_review_and_decision_read_in_units_and_labels_and_follow_a_decision(review_page):
    root, page = review_page
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    title = lambda: page.locator("h2", has_text="seatrial sea trial").first.inner_text()  # noqa: E731
    assert "fleet version 2" in title() and "champion: none yet" in title() and "★ champion" not in title()

    # Review: the regime table speaks in the dataset's units and labels, the bands in their order
    _tab(page, "Review")
    page.locator(".map-view canvas").first.wait_for()
    table = _text(page, ".seatrial-regimes")
    assert "RMSE candidate (t/day)" in table and "Vessel" in table and "all selected rows" in table
    page.locator(".overview-view select").first.select_option(label="speed band")
    _until(page, lambda: "kn" in _text(page, ".seatrial-regimes"), "the speed band table")
    bands = _text(page, ".seatrial-regimes")
    assert bands.index("0–8 kn") < bands.index("8–11 kn") < bands.index("11–14 kn") < bands.index("14–30 kn")
    checks = _text(page, ".seatrial-checks")
    assert "Predicted fuel consumption rises with speed through water" in checks and "monotone_stw_kn" not in checks
    assert not RAW_FLOAT.search(bands + checks)
    page.screenshot(path=str(ARTIFACTS / "review.png"), full_page=True)

    # History before any decision: no champion, so no rollback to offer
    _tab(page, "History")
    page.wait_for_selector("text=Champion of fleet now")
    assert page.get_by_role("button", name="Roll back the champion").count() == 0

    # Decision: what is being signed, with units, then the digests folded away for the record
    _tab(page, "Decision")
    headline = _text(page, ".seatrial-headline")
    assert "RMSE" in headline and "t/day" in headline and "baseline" in headline and "Δ vs baseline" in headline
    assert not RAW_FLOAT.search(headline)
    assert "checks passed" in _text(page, ".decision-view .seatrial-checks >> xpath=..")
    page.wait_for_selector("text=Where the candidate is worse")
    assert page.get_by_role("button", name=re.compile("evaluate \\(executed notebook\\)")).count() == 1
    assert page.locator("text=for the record").count() >= 1
    assert page.locator("text=sha256 predictions").count() == 0 or not page.locator("text=sha256 predictions").first.is_visible()
    page.screenshot(path=str(ARTIFACTS / "decision.png"), full_page=True)

    page.fill("textarea", "Fuel error by speed band at or below the baseline everywhere; fouling trend as expected.")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector("text=it is now the champion")
    _until(page, lambda: "★ champion" in title(), "the title's champion badge")           # no reload
    assert str(mlflow_client(root).get_model_version_by_alias("fleet", "champion").version) == "2"

    # History follows at once: the approval, the champion now; still nothing earlier to roll back to
    _tab(page, "History")
    _until(page, lambda: _shown(page, "text=Champion of fleet now: version 2"), "History's champion")
    history = _text(page, ".history-view .tabulator")
    assert "approved" in history and "reason" in history and not ISO_TIME.search(history)
    assert page.get_by_role("button", name="Roll back the champion").count() == 0
    page.screenshot(path=str(ARTIFACTS / "history.png"), full_page=True)

    # version 1, approved too: now there is an earlier champion, and rollback is offered
    _tab(page, "Queue")
    page.locator("select:visible").first.select_option(index=0)
    page.get_by_role("button", name="Open for review").click()
    page.wait_for_selector("text=fleet version 1")
    _tab(page, "Decision")
    page.fill("textarea", "Better at sea states above 2.5 m.")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector("text=it is now the champion")
    _tab(page, "History")
    _until(page, lambda: _shown(page, "text=Champion of fleet now: version 1"), "History's champion")
    page.get_by_role("button", name="Roll back the champion").wait_for()

    # someone moves the alias behind the page's back: the rollback is refused, and the refusal shows at once with its reason
    mlflow_client(root).set_registered_model_alias("fleet", "champion", "2")
    page.locator(".history-view input[type=text]").last.fill("Version 1 misreads the ballast legs.")
    page.get_by_role("button", name="Roll back the champion").click()
    page.wait_for_selector("text=Not recorded")
    _until(page, lambda: "refused" in _text(page, ".history-view .tabulator"), "the refused rollback in the table")
    assert "someone changed it meanwhile" in _text(page, ".history-view .tabulator")
