"""The README's JupyterLab snippet for the audit app, as written, in a real JupyterLab driven by chromium, offline."""
from __future__ import annotations

import re
from pathlib import Path

from jupyter_harness import jupyterlab, lab_page  # noqa: F401  (pytest fixtures)
from loopback import ARTIFACTS

README = Path(__file__).resolve().parent.parent / "README.md"


def readme_snippet() -> str:
    "The audit app's notebook cell, exactly as the README writes it."
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    found = [b for b in blocks if "from seatrial.audit.app import AuditApp" in b]
    assert len(found) == 1, "the README should show one python block that opens the audit app in JupyterLab"
    return found[0].strip()


def test_readme_snippet_shows_the_audit_app_offline(fleet_project, jupyterlab, lab_page):  # noqa: F811
    lab = jupyterlab(fleet_project)
    lab.new_notebook("audit.ipynb", [readme_snippet()])
    page = lab_page(lab)
    lab.open(page, "audit.ipynb")
    lab.run_all(page)

    out = page.locator(".jp-OutputArea-output")
    review = out.locator(".bk-tab.bk-active", has_text="Review")
    review.wait_for(timeout=120_000)                                  # the app opens on its Review tab
    assert out.get_by_text("fleet version 2").first.is_visible()     # the newest candidate is open
    out.locator(".map-view canvas").first.wait_for()
    out.locator(".seatrial-regimes").first.wait_for()
    lab.wait_idle(page)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "jupyterlab-audit-app.png"), full_page=True)

    # Other tabs are built when first shown: the click must reach the kernel and come back with the view. (Panel left
    # the document held after the map's own callbacks ran, and a click on a tab then never reached its watcher.)
    out.locator(".bk-tab", has_text="Queue").first.click()
    out.get_by_text("Candidates awaiting review").first.wait_for(timeout=30_000)
    assert out.locator(".bk-tab.bk-active", has_text="Queue").count() == 1
    out.locator(".bk-tab", has_text="History").first.click()
    out.locator(".history-view").get_by_text("Champion of").first.wait_for(timeout=30_000)

    shown = "\n".join(out.all_inner_texts())
    assert "AuditApp(name=" not in shown                              # no raw repr
    assert "panel extension" not in shown and "WARNING" not in shown  # no Panel warning
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert lab_page.outside == []                                     # nothing tried to leave the machine
