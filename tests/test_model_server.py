"""seatrial.model_server over real HTTP: `seatrial serve` (uvicorn, 127.0.0.1, a free port) in a subprocess on a copy of the
two-version fleet project, decided with the real `seatrial review`; requests made with httpx."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import threading
import time

import httpx
import numpy as np
from conftest import SEATRIAL, approve_with_cli as _approve, run_seatrial, telemetry_records
from loopback import free_port

from seatrial.derive import Deriver
from seatrial.model_server import ROW_TREES_PER_THREAD, predictor_text, service_events
from seatrial.review import ledger_path
from seatrial.sail import approved_model


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return {**env, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}


def _serve(root, *args: str) -> subprocess.Popen:
    return subprocess.Popen([str(SEATRIAL), "--root", str(root), "serve", *args], cwd=root, env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_up(proc: subprocess.Popen, url: str, limit_s: float = 90) -> None:
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        if proc.poll() is not None: raise AssertionError(f"the server stopped: {proc.communicate()[1]}")
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200: return
        except httpx.TransportError: pass
        time.sleep(0.2)
    raise AssertionError(f"the server did not answer /health within {limit_s} s")


def _expected(root, version: str, records: list[dict]) -> np.ndarray:
    "What the version's booster predicts on the deriver's inputs for these records, in process."
    m = approved_model(root, "fleet", version)
    d = Deriver.for_model(m).derive(records)
    assert not d.errors, d.errors
    return m.load_booster(num_threads=1).predict(d.matrix)


def _compiled(client: httpx.Client, version: str, limit_s: float = 120) -> dict:
    "/model once the version's batches go to its compiled trees (compiled at low priority: give it time on a busy machine)."
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        model = client.get("/model").json()
        if model["version"] == version and model["batch_predictor"]["state"] == "compiled": return model
        assert model["batch_predictor"]["state"] != "lightgbm" or "reason" not in model["batch_predictor"], model["batch_predictor"]
        time.sleep(0.2)
    raise AssertionError(f"version {version}'s trees were not compiled within {limit_s} s: {model['batch_predictor']}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try: proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill(); proc.wait()


def test_refuses_to_start_without_an_approved_version_or_on_a_public_address(fleet_project):
    root = fleet_project
    for args, said in ((["--version", "2"], "fleet version 2 may not sail"),
                       ([], "fleet has no champion"),
                       (["--address", "0.0.0.0"], "--address 0.0.0.0 is not a loopback address")):
        proc = run_seatrial(root, "serve", "--port", str(free_port()), *args)
        assert proc.returncode == 1, proc.stderr
        assert proc.stderr.startswith("seatrial: error: ") and said in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr


def test_serves_the_champion_checks_requests_and_swaps_under_load(fleet_project):
    root = fleet_project
    _approve(root, "1", "none")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(root, "--port", str(port), "--poll", "0.5")
    try:
        _wait_up(proc, url)
        client = httpx.Client(base_url=url, timeout=30)
        ready = client.get("/ready")
        assert ready.status_code == 200 and ready.json()["version"] == "1", ready.text
        model = client.get("/model").json()
        assert (model["name"], model["version"], model["approved_by"], model["reviewed"]) == ("fleet", "1", "ana", True)
        assert model["predictor"] in (predictor_text(False, True), predictor_text(True, True)), model["predictor"]
        assert model["target"]["unit"] == "t/day"
        assert model["fields"][:2] == ["time", "vessel_id"] and "stw_kn" in {f["name"] for f in model["features"]}
        assert {"Record", "Records", "RequestError"} <= set(model["request_schema"])

        # predictions equal the booster's on the deriver's inputs (one thread): one record, then a batch large enough for
        # the server to predict it on more threads (one per core: the same bits)
        records = telemetry_records(root, 400, step=95)   # rows the checks accept: the demo's injected faults fall between
        expected = _expected(root, "1", records)
        assert len(records) * approved_model(root, "fleet", "1").load_booster().num_trees() >= 2 * ROW_TREES_PER_THREAD
        one = client.post("/predict", json=records[0]).json()
        assert (one["model"], one["version"], one["reviewed"], one["errors"]) == ("fleet", "1", True, {})
        assert abs(one["predictions"][0]["prediction"] - expected[0]) <= 1e-9
        batch = client.post("/predict", json=records).json()
        got = np.array([p["prediction"] for p in batch["predictions"]])
        assert [p["row"] for p in batch["predictions"]] == list(range(400))
        assert np.abs(got - expected).max() <= 1e-9, np.abs(got - expected).max()

        # the trees compiled (tl2cgen, gcc) in the background take over batches once checked: the same answers
        model = _compiled(client, "1")
        assert model["predictor"] == predictor_text(True, True)
        assert model["batch_predictor"]["rows_checked"] > 1_000 and model["batch_predictor"]["largest_difference"] <= 1e-9
        assert (root / ".seatrial" / "compiled").is_dir() and model["batch_predictor"]["library"].endswith(".so")
        batch = client.post("/predict", json=records).json()
        got = np.array([p["prediction"] for p in batch["predictions"]])
        assert np.abs(got - expected).max() <= 1e-9, np.abs(got - expected).max()

        # one bad row in a batch: the good rows answered, the bad one named with its field
        bad = [dict(r) for r in records[:5]]
        bad[3]["lat"] = 123.0
        bad[1]["vessel_id"] = "NO-SUCH-SHIP"
        ans = client.post("/predict", json=bad)
        assert ans.status_code == 200, ans.text
        body = ans.json()
        assert [p["row"] for p in body["predictions"]] == [0, 2, 4]
        assert sorted(body["errors"]) == ["1", "3"]
        assert body["errors"]["3"][0]["field"] == "lat" and body["errors"]["1"][0]["field"] == "vessel_id"
        assert abs(body["predictions"][1]["prediction"] - expected[2]) <= 1e-9

        # whole-request refusals
        mal = client.post("/predict", content=b'{"time": "2024-01-01T00:00:00Z",', headers={"content-type": "application/json"})
        assert mal.status_code == 422 and "line 1, column" in mal.json()["error"] and "position" in mal.json(), mal.text
        wrong = client.post("/predict", content=b"time,lat\n", headers={"content-type": "text/csv"})
        assert wrong.status_code == 415 and "text/csv" in wrong.json()["error"], wrong.text
        unknown = client.post("/predict", json={**records[0], "vessel_id": "NO-SUCH-SHIP"})
        assert unknown.status_code == 422 and unknown.json()["rows"]["0"][0]["field"] == "vessel_id", unknown.text
        none = client.post("/predict", json=[{"lat": 1.0}])
        assert none.status_code == 422 and none.json()["rows"]["0"], none.text

        # a swap under load: requests sent continuously while version 2 is approved; none fails
        failures, versions, stop = [], [], threading.Event()
        def hammer():
            with httpx.Client(base_url=url, timeout=30) as c:
                while not stop.is_set():
                    try:
                        r = c.post("/predict", json=records[0])
                        if r.status_code != 200: failures.append(r.text)
                        else: versions.append(r.json()["version"])
                    except httpx.HTTPError as e: failures.append(repr(e))
        sender = threading.Thread(target=hammer)
        sender.start()
        try:
            time.sleep(0.5)
            _approve(root, "2", "1")
            t0, seen = time.monotonic(), "1"
            while time.monotonic() - t0 < 30 and seen != "2":
                seen = client.get("/model").json()["version"]
                time.sleep(0.1)
            swap_s = time.monotonic() - t0
            time.sleep(0.5)
        finally:
            stop.set(); sender.join(30)
        print(f"swap seen after {swap_s:.1f} s; {len(versions)} requests through it")
        assert seen == "2", "the server did not swap to version 2"
        assert failures == [] and len(versions) > 10
        assert versions[0] == "1" and versions[-1] == "2" and set(versions) == {"1", "2"}
        _compiled(client, "2")   # the new champion's trees compiled and checked too
        v2 = client.post("/predict", json=records[:3]).json()
        assert v2["version"] == "2"
        assert np.abs(np.array([p["prediction"] for p in v2["predictions"]]) - _expected(root, "2", records[:3])).max() <= 1e-9
        assert client.get("/ready").status_code == 200 and client.get("/model").json()["approved_by"] == "ana"

        # a refused swap: the ledger tampered with; version 2 keeps answering, /ready says why; restored, ready again
        led = ledger_path(root)
        text = led.read_text()
        led.write_text(text.replace("speed-band errors below baseline", "speed-band errors far below baseline", 1))
        t0, ready = time.monotonic(), client.get("/ready")
        while time.monotonic() - t0 < 30 and ready.status_code == 200:
            time.sleep(0.1); ready = client.get("/ready")
        assert ready.status_code == 503, ready.text
        assert "has been tampered with" in ready.json()["reason"] and "still serving version 2" in ready.json()["reason"]
        still = client.post("/predict", json=records[0])
        assert still.status_code == 200 and still.json()["version"] == "2"
        led.write_text(text)
        reload = client.post("/admin/reload")
        assert reload.status_code == 200 and reload.json() == {"outcome": "unchanged", "version": "2"}, reload.text
        assert client.get("/ready").status_code == 200

        metrics = client.get("/metrics").text
        n = float(re.search(r'^seatrial_requests_total\{route="/predict",status="200"\} (\S+)$', metrics, re.M).group(1))
        assert n >= len(versions) + 3
        assert re.search(r"^seatrial_swaps_total 1\.0$", metrics, re.M)
        # the tampering was seen at least once (a write seen half-done is a second refusal)
        assert float(re.search(r"^seatrial_refused_swaps_total (\S+)$", metrics, re.M).group(1)) >= 1
        assert 'seatrial_model_info{model="fleet",reviewed="true",role="champion",version="2"} 1.0' in metrics
        assert 'seatrial_requests_total{route="/predict",status="415"} 1.0' in metrics
        assert "seatrial_request_seconds_bucket" in metrics and "seatrial_rows_per_request_bucket" in metrics
        client.close()
    finally:
        _stop(proc)
    # uvicorn drains, then ends by the signal it was sent (its status says so); nothing on stderr but its own lines
    err = proc.stderr.read()
    assert proc.returncode in (0, -signal.SIGTERM) and "Traceback" not in err, err
    # the service log: version 1 in at start, out and 2 in at the swap, 2 out at the stop (the refused swap changed nothing)
    events = service_events(root, "fleet")
    assert [(e["event"], e["version"], e["role"]) for e in events] == [
        ("in", "1", "champion"), ("out", "1", "champion"), ("in", "2", "champion"), ("out", "2", "champion")], events
