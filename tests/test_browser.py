"""The audit app in a real browser: Debian's chromium driven by Playwright, against `seatrial audit` on 127.0.0.1."""
from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import pytest
from conftest import SEATRIAL, mlflow_client, run_seatrial
from loopback import ARTIFACTS, browser_or_skip, free_port, headless_chromium, listening

SECRET = "a-test-cookie-secret-of-reasonable-length-0123456789"
PASSWORDS = {"ana": "north-sea-trial-2026", "vic": "baltic-watch-2026"}   # a password may not contain its user's name
SCRIPT_COMMENT = '<script>window.__pwned = 1</script><img src=x onerror="window.__pwned = 2"> looks fine'


@contextlib.contextmanager
def serve_audit(root: Path):
    "`seatrial audit` on `root` with two users (an approver and a viewer), on a free loopback port: yields its URL."
    browser_or_skip()
    creds = root / "users.toml"
    for name, role in (("ana", "approver"), ("vic", "viewer")):
        proc = run_seatrial(root, "users", "add", name, "--role", role, "--credentials", str(creds),
                            "--password-stdin", input=PASSWORDS[name] + "\n")
        assert proc.returncode == 0, proc.stderr
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | {"SEATRIAL_COOKIE_SECRET": SECRET}
    with listening([str(SEATRIAL), "--root", str(root), "audit", "--port", str(port), "--credentials", str(creds)],
                   port, "seatrial audit", cwd=root, env=env) as url:
        yield url


@pytest.fixture
def audit_server(fleet_project):
    "`seatrial audit` with two users (an approver and a viewer), on a free loopback port."
    with serve_audit(fleet_project) as url:
        yield fleet_project, url


@pytest.fixture
def browser():
    with headless_chromium() as b:
        yield b


def _login(browser, url: str, user: str, elsewhere: list | None = None):
    "A page logged in as `user`; requests to any other place than the audit server are collected in `elsewhere`."
    page = browser.new_page(viewport={"width": 1600, "height": 1000})
    page.set_default_timeout(60_000)
    if elsewhere is not None:
        page.on("request", lambda r: None if r.url.startswith((url, "data:", "blob:")) else elsewhere.append(r.url))
    page.goto(url + "/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_selector("text=signed in as")
    return page


def _tab(page, name: str) -> None:
    page.locator(".bk-tab", has_text=name).first.click()


def _regime_table(page) -> str:
    table = page.locator(".seatrial-regimes").first
    table.wait_for()
    return table.inner_text()


def test_approver_reviews_selects_on_the_map_and_approves(audit_server, browser):
    root, url = audit_server
    elsewhere: list[str] = []   # the page must work offline: nothing fetched from anywhere but the audit server
    page = _login(browser, url, "ana", elsewhere)
    assert page.locator("text=fleet version 2").count() >= 1          # the newest candidate is open
    _tab(page, "Review")
    canvas = page.locator(".map-view canvas").first
    canvas.wait_for()
    before = _regime_table(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "audit-review.png"), full_page=True)

    box = canvas.bounding_box()   # a box selection inside the plot frame, west of mid-Atlantic (box select is the active drag)
    page.mouse.move(box["x"] + box["width"] * 0.15, box["y"] + box["height"] * 0.15)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] * 0.45, box["y"] + box["height"] * 0.85, steps=10)
    page.mouse.up()
    deadline = time.time() + 60
    while _regime_table(page) == before and time.time() < deadline:
        page.wait_for_timeout(250)
    after = _regime_table(page)
    assert after != before and "all selected rows" in after

    _tab(page, "Explanations")
    page.locator(".explanation-view canvas").first.wait_for()
    page.screenshot(path=str(ARTIFACTS / "audit-explanations.png"), full_page=True)

    _tab(page, "Decision")
    page.fill("textarea", "Fuel error by speed band at or below the baseline everywhere; fouling trend as expected.")
    page.get_by_role("button", name="Approve").click()
    page.wait_for_selector("text=it is now the champion")
    page.screenshot(path=str(ARTIFACTS / "audit-decision.png"), full_page=True)

    client = mlflow_client(root)
    assert str(client.get_model_version_by_alias("fleet", "champion").version) == "2"

    # the other candidate, opened from the queue, is compared with the new champion; its plots come from here too
    _tab(page, "Queue")
    page.locator("select:visible").first.select_option(index=0)   # the queue's candidate choice
    page.get_by_role("button", name="Open for review").click()
    page.wait_for_selector("text=fleet version 1")
    _tab(page, "Review")
    page.locator(".map-view canvas").first.wait_for()
    assert "champion (v2)" in _regime_table(page)
    _tab(page, "Explanations")
    page.locator(".explanation-view canvas").first.wait_for()
    assert elsewhere == []
    verify = run_seatrial(root, "review", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_viewer_cannot_approve(audit_server, browser):
    root, url = audit_server
    page = _login(browser, url, "vic")
    _tab(page, "Decision")
    page.wait_for_selector("text=only approvers can decide")
    assert page.get_by_role("button", name="Approve").count() == 0
    client = mlflow_client(root)
    assert not client.get_registered_model("fleet").aliases.get("champion")


def test_a_script_in_a_comment_shows_as_text(audit_server, browser):
    root, url = audit_server
    page = _login(browser, url, "ana")
    _tab(page, "Decision")
    page.fill("textarea", SCRIPT_COMMENT)
    page.get_by_role("button", name="Reject").click()
    page.wait_for_selector("text=rejected")
    _tab(page, "History")
    page.wait_for_selector("text=looks fine")
    assert page.locator("text=<script>window.__pwned = 1</script>").count() >= 1   # shown literally
    assert page.evaluate("window.__pwned") is None                                   # and never run
    version = mlflow_client(root).get_model_version("fleet", "2")
    assert version.tags["seatrial.status"] == "rejected"
