"""The workbench in a real JupyterLab, driven by chromium, offline: the start-here notebook run top to bottom, then its
workbench used as a person would (a parameter set in the form, a run watched to its end, two runs compared, a failing
run's kept notebook opened from its link, a run stopped, the audit app opened from the Review tab in a new browser tab
and in the notebook)."""
from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from jupyter_harness import jupyterlab, lab_page  # noqa: F401  (pytest fixtures)
from loopback import ARTIFACTS

from seatrial.core import read_json

REPO = Path(__file__).resolve().parent.parent
START_HERE = "nbs/00_start_here.ipynb"


def _project(root: Path) -> Path:
    "What a fresh clone holds that the start-here notebook uses: the notebook, and the 40k-row sample data."
    (root / "nbs").mkdir(parents=True)
    shutil.copy(REPO / START_HERE, root / START_HERE)
    shutil.copytree(REPO / "data" / "sample", root / "data" / "sample")
    return root


def _ran_all(page, timeout: float) -> None:
    "Wait until the notebook on show ran every cell, or stopped at an error (then fail with the error's text)."
    page.wait_for_function(
        "() => { const w = window.jupyterapp.shell.currentWidget; const cells = w.content.widgets;"
        " const failed = w.node.querySelector(\".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']\");"
        " return w.sessionContext.session.kernel.status === 'idle'"
        " && (failed || cells.every(c => c.model.type !== 'code' || c.model.executionCount !== null)); }",
        timeout=timeout * 1000)
    errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
    assert errors.count() == 0, errors.first.inner_text()[-3000:]


def _shot(page, name: str, target=None) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (target or page).screenshot(path=str(ARTIFACTS / name))


def _until(check, what: str, timeout: float = 300, every: float = 0.3):
    "Poll `check` until it returns something true; that value. AssertionError naming `what` after `timeout` seconds."
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := check():
            return found
        time.sleep(every)
    raise AssertionError(f"{what}: not within {timeout:.0f} s")


class Bench:
    "The workbench's first view in the page (the start-here notebook shows its Run tab twice more, below)."

    def __init__(self, page):
        self.page, self.root = page, page.locator(".seatrial-workbench").first

    def tab(self, title: str) -> None:
        self.root.locator(".lm-TabBar-tab", has_text=re.compile(rf"^\s*{title}\s*$")).first.click()

    def button(self, name: str):
        return self.root.locator("button.widget-button", has_text=re.compile(rf"^\s*{name}\s*$")).first

    def progress(self) -> str:
        "The Run tab's table of stages ('' before a run)."
        shown = self.root.locator(".seatrial-wb table.wb").all_inner_texts()   # no waiting: it may be replaced meanwhile
        return shown[0] if shown else ""

    def outcome(self) -> str | None:
        "The Run tab's outcome box (None while a run goes on)."
        shown = self.root.locator(".wb-box").all_inner_texts()   # no waiting: a new run clears it
        return shown[0] if shown else None

    def run_and_watch(self, timeout: float = 420, shot: str | None = None) -> tuple[str, list[str]]:
        """Press Run, then read the Run tab until the run ends: (its outcome, every distinct progress text seen); `shot`:
        a screenshot of the workbench the first time a stage is seen at a cell."""
        self.root.scroll_into_view_if_needed()   # JupyterLab draws only the cells in view
        self.tab("Run")
        before, seen, pending = self.outcome(), [], [shot] if shot else []
        self.button("Run").click()

        def ended():
            now = self.progress()
            if now and (not seen or seen[-1] != now):
                seen.append(now)
                if pending and re.search(r"running\s+cell \d+ of \d+", now):
                    _shot(self.page, pending.pop(), self.root)
            said = self.outcome()
            return said if said and said != before else None
        return _until(ended, "the run's outcome", timeout), seen


@pytest.mark.timeout(2400)   # four pipeline runs on the 40k-row sample, on a busy machine
def test_start_here_and_the_workbench_in_jupyterlab(tmp_path, jupyterlab, lab_page):  # noqa: F811
    root = _project(tmp_path / "project")
    lab = jupyterlab(root)
    page = lab_page(lab, width=1400, height=1000)
    lab.open(page, START_HERE)
    lab.run_all(page)
    _ran_all(page, timeout=1200)                                        # both runs and the comparison of the notebook
    bench = Bench(page)
    bench.root.scroll_into_view_if_needed()                             # JupyterLab draws only the cells in view
    bench.tab("Dataset")                                                # the notebook's comparison left Runs open
    bench.root.get_by_text(re.compile(r"\d rows")).filter(visible=True).first.wait_for()   # the Dataset tab's summary
    bench.root.locator("img").filter(visible=True).first.wait_for()                         # and its map
    _shot(page, "workbench-dataset.png", bench.root)
    runs = sorted(p.parent.name for p in (root / "runs").glob("*/run.json"))
    assert len(runs) == 2 and all(read_json(root / "runs" / r / "run.json")["status"] == "finished" for r in runs)
    assert page.locator(".jp-OutputArea-output").get_by_text("Parameters that differ").count() >= 1   # the comparison cell

    # A parameter typed into the form (the notebook left its grid there, and a re-run from train), a run from the Run
    # tab watched to its end
    bench.tab("Parameters")
    seed = bench.root.locator(".widget-inline-hbox", has=page.locator("label", has_text=re.compile(r"^\s*seed\s*$"))).locator("input")
    seed.fill("1")
    seed.press("Tab")
    bench.tab("Run")
    bench.root.get_by_text("with 2 parameters set on the Parameters tab").first.wait_for()   # the grid and the seed
    outcome, seen = bench.run_and_watch(shot="workbench-run-progress.png")
    assert "finished in" in outcome and "awaits review" in outcome, outcome
    assert any("running" in s for s in seen) and len(seen) >= 3, seen   # the progress moved while it ran
    assert "reused" in seen[-1]                                          # ingest and features were unchanged
    assert (ARTIFACTS / "workbench-run-progress.png").exists()           # a stage was seen at a cell
    _shot(page, "workbench-run-finished.png", bench.root)
    third = _until(lambda: [p.parent.name for p in (root / "runs").glob("*/run.json") if p.parent.name not in runs], "the new run")[0]
    record = read_json(root / "runs" / third / "run.json")
    assert record["source"] == "workbench" and record["status"] == "finished"
    assert [s["status"] for s in record["stages"]][:2] == ["cached", "cached"]

    # Two runs compared: the table lists both, the comparison names both
    bench.tab("Runs")
    bench.root.locator("table.seatrial-table").get_by_text(third).first.wait_for()
    chooser = bench.root.locator("select[multiple]").first
    labels = [t for t in chooser.locator("option").all_inner_texts() if t.replace("\xa0", " ").split(" · ")[0] in (third, runs[1])]
    chooser.select_option(label=labels)
    bench.button("Compare").click()   # in place of the notebook's own comparison, shown there until now
    result = _until(lambda: third in (t := bench.root.locator(".seatrial-compare").first.inner_text()) and t, "the comparison", 60)
    assert runs[1] in result and "Parameters that differ" in result and "seed" in result
    page.wait_for_timeout(1000)   # the figures follow the tables
    _shot(page, "workbench-compare.png", bench.root)

    # A run that fails at run time: its stage, cell and error, and a link that opens the kept notebook in JupyterLab
    bench.tab("Parameters")
    grid = bench.root.locator(".widget-textarea", has=page.locator("label", has_text=re.compile(r"^\s*grid\s*$"))).locator("textarea")
    grid.fill('[{"num_leaves": 1}]')                                     # accepted as JSON; LightGBM refuses it
    outcome, _ = bench.run_and_watch()
    assert "Stage train failed at cell" in outcome and "num_leaves" in outcome, outcome
    _shot(page, "workbench-failed.png", bench.root)
    link = bench.root.get_by_role("link", name="Open the kept notebook in JupyterLab")
    href = link.get_attribute("href")
    assert re.fullmatch(r"/lab/tree/reports/[^/]+/03_train\.ipynb", href), href
    with page.context.expect_page() as opened:
        link.click()
    kept = opened.value
    kept.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    kept.locator(".jp-OutputArea-output").get_by_text("num_leaves").first.wait_for(timeout=60_000)   # the error, at its cell
    _shot(kept, "workbench-failed-notebook.png")
    kept.close()
    page.bring_to_front()   # a page in the background draws nothing (no animation frames): the widgets would lag

    # A run stopped while it goes: recorded as interrupted. A slower grid search (four points at a low learning rate)
    # from train, stopped while it searches: a stop that lands while a stage's kernel is still starting, or in a stage's
    # last seconds, would prove less
    bench.tab("Parameters")
    grid.fill('[' + ", ".join(f'{{"num_leaves": {n}, "learning_rate": 0.02, "min_data_in_leaf": 20}}' for n in (15, 31, 63, 127)) + ']')
    bench.tab("Run")
    bench.root.locator("select").filter(has=page.locator("option", has_text="train and after")).select_option(label="train and after")
    bench.button("Run").click()
    _until(lambda: bench.outcome() is None and re.search(r"train\s+running\s+cell [5-9] of", bench.progress()),
           "the grid search at work")
    bench.button("Stop").click()
    outcome = _until(bench.outcome, "the stopped run's outcome", 120)
    assert "recorded as interrupted" in outcome, outcome
    _shot(page, "workbench-stopped.png", bench.root)
    stopped = re.search(r"run (\S+) is recorded", outcome).group(1)
    record = read_json(root / "runs" / stopped / "run.json")
    statuses = [s["status"] for s in record["stages"]]
    assert record["status"] == "interrupted" and statuses[:3] == ["cached", "cached", "interrupted"], statuses
    assert not list((root / "reports").rglob(".*.partial.ipynb"))

    # The Review tab: the queue, the audit app served in a new browser tab, and shown here in the notebook
    bench.tab("Review")
    bench.root.get_by_text("awaiting review").filter(visible=True).first.wait_for(timeout=120_000)
    bench.button("Open audit app in a new tab").click()
    link = bench.root.get_by_role("link", name="Open the audit app")
    link.wait_for(timeout=180_000)
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/", link.get_attribute("href")), link.get_attribute("href")
    with page.context.expect_page() as opened:
        link.click()
    app = opened.value
    app.locator(".bk-tab", has_text="Review").first.wait_for(timeout=120_000)
    _shot(app, "workbench-audit-new-tab.png")
    app.close()
    page.bring_to_front()
    bench.button("Show here").click()
    bench.root.locator(".bk-tab.bk-active", has_text="Review").first.wait_for(timeout=180_000)
    page.wait_for_timeout(2000)
    _shot(page, "workbench-review.png", bench.root)

    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").count() == 0
    assert lab_page.outside == []                                        # nothing tried to leave the machine
