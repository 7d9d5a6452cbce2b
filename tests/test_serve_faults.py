"""Faults the model server meets while serving: a 100 MB body (declared, and chunked with no length), the model file
replaced on disk, the registry unreachable during a reload (a real `mlflow server` in front of the project's store,
stopped and started again). The app is called in process through ASGI, so a test can count how much of a body the
server read; the registry is real MLflow over HTTP."""
from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import approve_with_cli, cli
from loopback import free_port

from seatrial.model_server import make_app

RECORD = {"time": "2024-03-01T12:00:00Z", "vessel_id": "CNT001", "lat": 40.1, "lon": -30.2, "stw_kn": 18.2, "sog_kn": 18.0,
          "heading_deg": 90, "draught_m": 11.5, "trim_m": 0.3}
MB = 1 << 20


def _call(app, method: str, path: str, chunks=(), headers: dict | None = None) -> tuple[int, dict, int]:
    "One request through the ASGI app: its status, JSON body, and how many body chunks the app pulled."
    it, pulled, out = iter(chunks), [0], {"body": b""}

    async def receive():
        chunk = next(it, None)
        if chunk is None: return {"type": "http.request", "body": b"", "more_body": False}
        pulled[0] += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(msg):
        if msg["type"] == "http.response.start": out["status"] = msg["status"]
        elif msg["type"] == "http.response.body": out["body"] += msg.get("body", b"")

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
             "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    return out["status"], json.loads(out["body"]), pulled[0]


def _predict(app) -> tuple[int, dict]:
    body = json.dumps(RECORD).encode()
    status, answer, _ = _call(app, "POST", "/predict", [body], {"content-type": "application/json",
                                                                 "content-length": str(len(body))})
    return status, answer


@pytest.fixture
def approved(fleet_project) -> Path:
    approve_with_cli(fleet_project, "1", "none")
    return fleet_project


def test_a_100_mb_body_is_refused_without_reading_it_and_the_model_file_replaced_on_disk_is_never_loaded(approved):
    root = approved
    app = make_app(root, "fleet", poll_s=3600)   # no lifespan: the watcher never runs, reloads are asked for here
    server = app.state.server
    assert _predict(app)[0] == 200
    _openapi_matches_the_app(app)

    one_mb = b" " * MB
    declared = {"content-type": "application/json", "content-length": str(100 * MB)}
    status, body, pulled = _call(app, "POST", "/predict", (one_mb for _ in range(100)), declared)
    assert (status, pulled) == (413, 0), body      # refused on the declared length: not one byte read
    assert "104,857,600 bytes" in body["error"] and body["limit_bytes"] == server.current.schema.max_bytes
    status, body, pulled = _call(app, "POST", "/predict", (one_mb for _ in range(100)), {"content-type": "application/json"})
    assert status == 413 and "stopped reading there" in body["error"], body
    assert pulled <= server.current.schema.max_bytes // MB + 1   # chunked, no length: read up to the limit, no further
    status, body, _ = _call(app, "POST", "/feedback", (one_mb for _ in range(100)), {"content-type": "application/json"})
    assert status == 413, body

    # the model file replaced on disk: the version in memory keeps answering; the next load refuses the file
    path = server.current.model.model_path
    assert path.is_relative_to(root), path           # the project's own copy, never the shared fixture's
    original = path.read_bytes()
    try:
        path.write_bytes(original.replace(b"\n", b"\n\n", 1))
        out = server.reload(force=True)
        assert out["outcome"] == "refused" and "is not the one approved" in out["reason"], out
        assert "still serving version 1" in out["reason"]
        status, ready = server.ready()
        assert status == 503 and "is not the one approved" in ready["reason"], ready
        status, answer = _predict(app)
        assert status == 200 and answer["version"] == "1", answer
    finally:
        path.write_bytes(original)
    assert server.reload(force=True)["outcome"] == "unchanged" and server.ready()[0] == 200
    metrics = _metrics_text(app)
    assert re.search(r"^seatrial_refused_swaps_total 1\.0$", metrics, re.M), metrics
    assert 'seatrial_requests_total{route="/predict",status="413"} 2.0' in metrics


def _refs(node) -> list[str]:
    if isinstance(node, dict): return [v for k, v in node.items() if k == "$ref"] + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list): return [r for v in node for r in _refs(v)]
    return []


def _openapi_matches_the_app(app) -> None:
    "GET /openapi.json describes every route and method of the app and nothing else, with the scope each needs."
    from seatrial.api_tokens import OPEN, ROUTE_ACCESS
    status, doc, _ = _call(app, "GET", "/openapi.json")
    assert status == 200 and doc["openapi"].startswith("3.1"), doc
    routes = {(r.path, m.lower()) for r in app.routes for m in r.methods if m != "HEAD"}
    assert {(p, m) for p, ops in doc["paths"].items() for m in ops} == routes
    for (path, method) in routes:
        op = doc["paths"][path][method]
        assert op["responses"] and op["summary"], (path, method)
        rule = ROUTE_ACCESS[path]
        assert op["security"] == ([] if rule == OPEN else [{"bearer": [rule]}]), (path, op["security"])
    schemas = doc["components"]["schemas"]
    for ref in _refs(doc):
        assert ref.startswith("#/components/schemas/") and ref.rsplit("/", 1)[1] in schemas, ref
    assert list(schemas["Record"]["properties"]) == list(app.state.server.current.schema.fields)
    assert "t/day" in doc["paths"]["/predict"]["post"]["summary"]


def _metrics_text(app) -> str:
    out = {"body": b""}

    async def receive(): return {"type": "http.request", "body": b"", "more_body": False}

    async def send(msg):
        if msg["type"] == "http.response.body": out["body"] += msg.get("body", b"")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/metrics", "raw_path": b"/metrics", "query_string": b"", "root_path": "", "headers": [],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 8000)}
    asyncio.run(app(scope, receive, send))
    return out["body"].decode()


def _mlflow_server(root: Path, port: int) -> subprocess.Popen:
    "A real MLflow tracking server in front of the project's SQLite store, on loopback."
    mlflow = Path(sys.executable).parent / "mlflow"
    proc = subprocess.Popen([str(mlflow), "server", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}",
                             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
                            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"})
    end = time.monotonic() + 120
    while time.monotonic() < end:
        if proc.poll() is not None: raise AssertionError(f"mlflow server stopped: {proc.communicate()[1][-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200: return proc
        except httpx.TransportError: pass
        time.sleep(0.3)
    proc.kill()
    raise AssertionError("mlflow server did not answer /health within 120 s")


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try: proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill(); proc.wait()


def test_the_registry_unreachable_during_a_reload_keeps_the_version_serving_and_says_so(approved, monkeypatch):
    root, port = approved, free_port()
    registry = _mlflow_server(root, port)
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{port}")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
        app = make_app(root, "fleet", poll_s=3600)
        server = app.state.server
        assert server.current.version == "1" and _predict(app)[0] == 200
    finally:
        _stop(registry)
    # the registry is gone: a reload is refused, version 1 keeps answering, /ready and the metrics say why
    out = server.reload(force=True)
    assert out["outcome"] == "refused" and "still serving version 1" in out["reason"], out
    status, ready = server.ready()
    assert status == 503 and f"127.0.0.1:{port}" in ready["reason"], ready
    status, answer = _predict(app)
    assert status == 200 and answer["version"] == "1", answer
    assert re.search(r"^seatrial_refused_swaps_total 1\.0$", _metrics_text(app), re.M)
    # back again: the next reload finds the same approved champion and the server is ready
    registry = _mlflow_server(root, port)
    try:
        out = server.reload(force=True)
        assert out["outcome"] == "unchanged", out
        assert server.ready()[0] == 200
    finally:
        _stop(registry)


def test_a_challenger_and_shadow_whose_approval_is_taken_back_stop_serving_and_the_champion_answers(fleet_project):
    root = fleet_project
    approve_with_cli(root, "1", "none")
    approve_with_cli(root, "2", "1")   # champion 2, tried as the challenger and shadow of itself before it took over
    app = make_app(root, "fleet", poll_s=3600, challenger="2", share=1.0, shadow="2")
    server = app.state.server
    status, answer = _predict(app)
    assert status == 200 and answer["predictions"][0]["role"] == "challenger", answer
    assert server.reload()["outcome"] == "unchanged"   # nothing moved: nothing re-checked, nothing withdrawn

    cli(root, "review", "rollback", "fleet", "-m", "drifts on the tankers", "--user", "ana")   # version 2's approval taken back
    out = server.reload()
    assert (out["outcome"], out["version"]) == ("swapped", "1"), out
    assert set(out["withdrawn"]) == {"challenger", "shadow"}, out
    assert "challenger version 2 stopped serving" in out["withdrawn"]["challenger"]
    assert "rolled back" in out["withdrawn"]["challenger"], out   # the gate's own words: approved, then rolled back
    assert [role for role, _ in server.roles()] == ["champion"]
    status, ready = server.ready()
    assert status == 200 and set(ready["withdrawn"]) == {"challenger", "shadow"}, ready   # the champion answers for them
    status, answer = _predict(app)
    assert status == 200 and [(p["role"], p["version"]) for p in answer["predictions"]] == [("champion", "1")], answer
    assert server.reload(force=True).get("withdrawn") is None   # said once, when it happened
    metrics = _metrics_text(app)
    assert 'seatrial_withdrawn_total{role="challenger"} 1.0' in metrics and 'seatrial_withdrawn_total{role="shadow"} 1.0' in metrics
    assert 'seatrial_model_info{model="fleet",reviewed="true",role="challenger",version="2"} 0.0' in metrics
    assert 'seatrial_model_info{model="fleet",reviewed="true",role="champion",version="1"} 1.0' in metrics
