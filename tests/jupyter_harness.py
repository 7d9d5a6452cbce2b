"""A real JupyterLab for browser tests: the venv's `jupyter lab` on 127.0.0.1 with a token, driven by Debian's chromium
through Playwright, with every request that would leave the machine blocked and recorded.

Use from a test file:

    from jupyter_harness import jupyterlab, lab_page   # noqa: F401  (pytest fixtures)

    def test_x(jupyterlab, lab_page, tmp_path):
        lab = jupyterlab(tmp_path)                       # a server whose root is tmp_path (killed at teardown)
        lab.new_notebook("x.ipynb", ["1 + 1"])           # written through the Jupyter REST API
        page = lab_page(lab)                             # a chromium page logged in to it
        lab.open(page, "x.ipynb"); lab.run_all(page)
        ...
        assert lab_page.outside == []                    # nothing tried to reach the network
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from loopback import free_port, headless_chromium

JUPYTER = Path(sys.executable).parent / "jupyter"
LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


def is_local(url: str) -> bool:
    "A URL the page may fetch offline: loopback, or data/blob/about URLs that never leave the browser."
    parts = urlsplit(url)
    return parts.scheme in ("data", "blob", "about") or (parts.hostname or "") in LOOPBACK


class JupyterLab:
    "A running `jupyter lab` (started by `start`): its URL, token and root folder, and its REST API."

    def __init__(self, root: Path, home: Path, timeout: float = 60):
        self.root, self.port, self.token = Path(root), free_port(), secrets.token_hex(16)
        self.url = f"http://127.0.0.1:{self.port}"
        home.mkdir(parents=True, exist_ok=True)
        # A private Jupyter config, data and runtime folder: nothing from the user's ~/.jupyter, and no workspace state
        # carried from one test to the next. Extensions installed in the venv (sys-prefix) are still found.
        env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "JUPYTER_TOKEN")}
        env |= {"JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_DATA_DIR": str(home / "data"),
                "JUPYTER_RUNTIME_DIR": str(home / "runtime"), "IPYTHONDIR": str(home / "ipython"),
                "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2")}
        # No "get notified about Jupyter news?" prompt over the page, and no news or update check.
        notification = home / "config/lab/user-settings/@jupyterlab/apputils-extension/notification.jupyterlab-settings"
        notification.parent.mkdir(parents=True, exist_ok=True)
        notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        self.log = open(home / "jupyter.log", "w")   # closed in stop()
        cmd = [str(JUPYTER), "lab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}", "--port-retries=0",
               f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
               f"--LabApp.workspaces_dir={home / 'workspaces'}",
               "--LabApp.expose_app_in_browser=True",            # window.jupyterapp: run commands without menus
               "--LabApp.news_url=None",                          # no news feed fetched from jupyter.org
               "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
               "--LabApp.extension_manager=readonly"]             # no extension listing fetched from PyPI
        if os.geteuid() == 0:   # containers and CI runners often run as root; Jupyter refuses that unless told
            cmd.append("--allow-root")
        # Its own process group: the kernels it starts are stopped with it.
        self.proc = subprocess.Popen(cmd, cwd=self.root, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited ({self.proc.returncode}): {self.server_log()}")
            try:
                self.api("GET", "/api/status")
                break
            except (OSError, urllib.error.URLError):
                if time.time() > deadline:
                    self.stop()
                    raise AssertionError(f"jupyter lab did not answer within {timeout} s: {self.server_log()}") from None
                time.sleep(0.3)

    def server_log(self) -> str:
        self.log.flush()
        return Path(self.log.name).read_text()[-4000:]

    def api(self, method: str, path: str, body: dict | None = None) -> dict | list | None:
        "One call to the Jupyter server's REST API; the decoded JSON answer."
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Authorization": f"token {self.token}", "Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as r:
            text = r.read()
        return json.loads(text) if text else None

    def new_notebook(self, name: str, cells: list[str]) -> str:
        "Write a notebook of code cells into the server's root, through the contents API; return its path."
        nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {
                  "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
              "cells": [{"cell_type": "code", "id": f"cell-{i}", "metadata": {}, "source": src, "outputs": [],
                         "execution_count": None} for i, src in enumerate(cells)]}
        self.api("PUT", f"/api/contents/{name}", {"type": "notebook", "format": "json", "content": nb})
        return name

    def open(self, page, path: str) -> None:
        "Open a notebook in the JupyterLab page and wait until its kernel is ready."
        page.goto(f"{self.url}/lab/tree/{path}?token={self.token}")
        page.wait_for_selector(".jp-Notebook .jp-Cell")
        page.wait_for_function("() => { const w = window.jupyterapp?.shell?.currentWidget;"
                               " return w?.sessionContext?.session?.kernel?.status === 'idle'; }", timeout=60_000)

    def run_all(self, page) -> None:
        "Run every cell of the notebook on show (JupyterLab's own command, as the Run menu does)."
        page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")

    def wait_idle(self, page, timeout: float = 120) -> None:
        "Wait until every cell of the notebook on show has run and its kernel is idle again."
        page.wait_for_function("() => { const w = window.jupyterapp.shell.currentWidget;"
                               " const cells = w.content.widgets;"
                               " return w.sessionContext.session.kernel.status === 'idle'"
                               " && cells.every(c => c.model.type !== 'code' || c.model.executionCount !== null); }",
                               timeout=timeout * 1000)

    def stop(self) -> None:
        "Stop the server and its kernels (each kernel runs in a session of its own: shut down through the API first)."
        if self.proc.poll() is None:
            try:
                for kernel in self.api("GET", "/api/kernels"):
                    self.api("DELETE", f"/api/kernels/{kernel['id']}")
            except (OSError, urllib.error.URLError):
                pass   # the server is going anyway; its own shutdown stops the kernels it still knows
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        try:   # a kernel that outlived the server (it shares the group)
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()


@pytest.fixture
def jupyterlab(tmp_path_factory):
    "A factory: `jupyterlab(root)` starts a JupyterLab serving `root`; every one started is stopped at teardown."
    started: list[JupyterLab] = []

    def start(root: Path) -> JupyterLab:
        lab = JupyterLab(root, tmp_path_factory.mktemp("jupyter-home"))
        started.append(lab)
        return lab
    yield start
    for lab in started:
        lab.stop()


class _Pages:
    "Chromium pages logged in to a JupyterLab; `outside` lists every request that tried to leave the machine."

    def __init__(self, browser):
        self.browser, self.outside, self.contexts = browser, [], []

    def __call__(self, lab: JupyterLab, width: int = 1500, height: int = 1100):
        context = self.browser.new_context(viewport={"width": width, "height": height})
        self.contexts.append(context)

        def route(r):
            if is_local(r.request.url):
                r.continue_()
            else:   # offline means offline: refused, and recorded for the test to assert on
                self.outside.append(r.request.url)
                r.abort("internetdisconnected")
        context.route("**/*", route)
        page = context.new_page()
        page.set_default_timeout(60_000)
        return page


@pytest.fixture
def lab_page():
    "A factory of chromium pages for a `JupyterLab`, with non-loopback requests blocked (see `_Pages.outside`)."
    with headless_chromium() as browser:
        pages = _Pages(browser)
        yield pages
        for c in pages.contexts:
            c.close()
