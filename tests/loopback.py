"""What the browser and server tests share: Debian's chromium (a loud skip on a laptop without it, a failure under
CI=true), free loopback ports, and servers started as processes that must listen before a test goes on."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = Path(os.environ.get("SEATRIAL_TEST_ARTIFACTS", Path(__file__).parent / "artifacts"))


def browser_or_skip() -> None:
    "Skip when Debian's chromium is missing, but fail under CI=true: a browser test that did not run proves nothing."
    if Path(CHROMIUM).exists():
        return
    msg = f"BROWSER TESTS NOT RUN: {CHROMIUM} is missing (apt-get install -y chromium)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(msg + " - under CI a missing browser is a failure")
    warnings.warn(msg, stacklevel=2)
    pytest.skip(msg)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def listening(cmd: list[str], port: int, what: str, timeout: float = 120, **popen) -> Iterator[str]:
    """Start `cmd` (a server that will listen on 127.0.0.1:`port`), wait until it does, yield its URL, stop it after.
    Its output goes to a file, not a pipe nobody reads (a full pipe would stall the server), and is shown if it dies."""
    with tempfile.TemporaryFile("w+") as log:
        server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, text=True, **popen)

        def output() -> str:
            log.flush(); log.seek(0)
            return log.read()[-5000:]
        try:
            deadline = time.time() + timeout
            while True:
                if server.poll() is not None:
                    raise AssertionError(f"{what} exited: {output()}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.time() > deadline:
                        raise AssertionError(f"{what} did not listen within {timeout:.0f} s: {output()}") from None
                    time.sleep(0.3)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.terminate()
            try:
                server.wait(10)
            except subprocess.TimeoutExpired:
                server.kill()


@contextlib.contextmanager
def headless_chromium():
    "Debian's chromium, headless, driven by Playwright."
    browser_or_skip()
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()
