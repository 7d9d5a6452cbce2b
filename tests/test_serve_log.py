"""The model server's prediction log, feedback, shutdown and canary over real HTTP: `seatrial serve` (or `serve_model` in a
python subprocess, for what the CLI does not pass yet) on 127.0.0.1 on a copy of the two-version fleet project, decided
with the real `seatrial review`; SIGTERM and kill -9 sent to the real process; the log read back with seatrial.predlog."""
from __future__ import annotations

import resource
import signal
import subprocess
import sys
import threading
import time
import warnings

import httpx
import numpy as np
import pytest
from conftest import approve_with_cli as _approve, telemetry_records
from loopback import free_port
from test_model_server import _env, _expected, _serve, _stop, _wait_up

from seatrial.model_server import ModelServer, challenger_mask, service_events, share_of
from seatrial.predlog import SegmentSkippedWarning, prediction_folder, read_feedback, read_predictions
from seatrial.sail import SailError


def _serve_py(root, port: int, preexec=None, **kw) -> subprocess.Popen:
    "serve_model(root, 'fleet', port=port, **kw) in a python subprocess (what `seatrial serve` runs, with parameters the CLI lacks)."
    code = (f"from seatrial.model_server import serve_model; serve_model({str(root)!r}, 'fleet', port={port}, "
            + ", ".join(f"{k}={v!r}" for k, v in kw.items()) + ")")
    return subprocess.Popen([sys.executable, "-c", code], cwd=root, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, preexec_fn=preexec)


def _ended(proc: subprocess.Popen) -> str:
    "Wait for a signalled server to end; its stderr, which must hold no traceback."
    try: proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill(); proc.wait()
        raise AssertionError("the server did not end within 60 s of SIGTERM") from None
    err = proc.stderr.read()
    assert "Traceback" not in err, err
    return err


def test_the_challenger_share_holds_over_10000_entities_and_is_sticky():
    ids = np.array([f"IMO{9_100_000 + 7 * i}" for i in range(10_000)], dtype=object)
    for share in (0.1, 0.25, 0.5):
        m = challenger_mask(ids, len(ids), share, {})
        assert abs(m.mean() - share) <= 0.02, (share, m.mean())
        again = challenger_mask(ids[::-1].copy(), len(ids), share)[::-1]   # another order, no cache: the same sides
        assert (again == m).all()
    # a stable hash, not Python's salted hash(): the same number in every process
    assert share_of("IMO9100000") == int.from_bytes(__import__("hashlib").blake2b(b"IMO9100000", digest_size=8).digest(), "big") / 2**64
    out = subprocess.run([sys.executable, "-c", "from seatrial.model_server import share_of; print(repr(share_of('IMO9100000')))"],
                         capture_output=True, text=True, env={**_env(), "PYTHONHASHSEED": "123"})
    assert float(out.stdout) == share_of("IMO9100000"), out.stderr


def test_every_answer_is_logged_feedback_is_stored_and_sigterm_loses_nothing(fleet_project):
    root = fleet_project
    _approve(root, "1", "none")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(root, "--port", str(port), "--no-compile")
    try:
        _wait_up(proc, url)
        c = httpx.Client(base_url=url, timeout=30)
        assert c.get("/model").json()["batch_predictor"] == {"state": "lightgbm", "by": "lightgbm"}   # as asked, no reason
        records = telemetry_records(root, 30)
        expected = _expected(root, "1", records)
        answered: dict[str, float] = {}
        for rec in records[:20]:                               # single records
            p = c.post("/predict", json=rec).json()["predictions"][0]
            assert (p["role"], p["version"]) == ("champion", "1")
            answered[p["prediction_id"]] = p["prediction"]
        batch = c.post("/predict", json=records[20:]).json()   # a batch of 10, one row bad
        bad = [dict(r) for r in records[20:23]]
        bad[1]["lat"] = 123.0
        partly = c.post("/predict", json=bad).json()
        assert sorted(partly["errors"]) == ["1"] and [p["row"] for p in partly["predictions"]] == [0, 2]
        for p in batch["predictions"] + partly["predictions"]: answered[p["prediction_id"]] = p["prediction"]
        n = len(answered)
        assert n == 32 and all(answered), "every answered row has its own prediction id"

        # feedback: by prediction id and by vessel and time; a bad list is refused whole, naming row and field
        first = batch["predictions"][0]["prediction_id"]
        fb = c.post("/feedback", json=[{"prediction_id": first, "observed": 31.5},
                                       {"vessel_id": records[0]["vessel_id"], "time": records[0]["time"], "observed": 12.25}])
        assert fb.status_code == 200 and fb.json() == {"stored": 2, "by_prediction_id": 1, "by_entity": 1}, fb.text
        one = c.post("/feedback", json={"prediction_id": first, "observed": 30})
        assert one.status_code == 200 and one.json()["stored"] == 1, one.text
        refused = c.post("/feedback", json=[{"prediction_id": first, "observed": 1.0}, {"prediction_id": first, "observed": "high"},
                                            {"vessel_id": "CNT001", "time": "2024-03-01T06:00:00", "observed": 1.0},
                                            {"prediction_id": first, "observed": 1.0, "speed": 3}])
        body = refused.json()
        assert refused.status_code == 422 and sorted(body["rows"]) == ["1", "2", "3"], refused.text
        assert [p["field"] for p in body["rows"]["1"]] == ["observed"] and body["rows"]["2"][0]["field"] == "time"
        assert body["rows"]["3"][0]["field"] == "speed" and "nothing was stored" in body["error"]
        assert c.post("/feedback", content=b"[{", headers={"content-type": "application/json"}).status_code == 422
        assert c.post("/feedback", content=b"x", headers={"content-type": "text/plain"}).status_code == 415

        ready = c.get("/ready").json()
        assert ready["ready"] and ready["log"]["healthy"], ready
        metrics = c.get("/metrics").text
        for series in ("seatrial_log_queue_rows ", "seatrial_log_rows_written_total ", "seatrial_log_write_errors_total 0.0",
                       "seatrial_log_dropped_rows_total 0.0", 'seatrial_predictions_count{role="champion"} 32.0',
                       'seatrial_model_info{model="fleet",reviewed="true",role="champion",version="1"} 1.0',
                       'seatrial_requests_total{route="/feedback",status="422"} 2.0'):
            assert series in metrics, series
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)   # drains: nothing answered may be missing
    _ended(proc)

    folder = prediction_folder(root, "fleet")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentSkippedWarning)
        df = read_predictions(folder)
    assert len(df) == n and set(df["prediction_id"]) == set(answered)
    assert np.abs(df.set_index("prediction_id")["output"].loc[list(answered)].to_numpy() - np.array(list(answered.values()))).max() == 0
    assert set(df["role"]) == {"champion"} and set(df["version"]) == {"1"} and df["reviewed"].all()
    assert (df["latency_s"] > 0).all() and {"r_vessel_id", "r_time", "r_stw_kn", "x_stw_kn"} <= set(df.columns)
    single = df.set_index("prediction_id").loc[[p for p in answered][:20]]
    assert list(single["r_vessel_id"]) == [r["vessel_id"] for r in records[:20]]
    assert np.abs(single["output"].to_numpy() - expected[:20]).max() <= 1e-9

    fb = read_feedback(folder, entity_field="vessel_id")
    assert len(fb) == 3 and set(fb["observed"]) == {31.5, 12.25, 30.0}
    by_id = fb[fb["observed"] == 31.5].iloc[0]
    assert by_id["prediction_id"] == first and by_id["output"] == answered[first]
    by_entity = fb[fb["observed"] == 12.25].iloc[0]
    assert by_entity["r_vessel_id"] == records[0]["vessel_id"] and abs(by_entity["output"] - expected[0]) <= 1e-9

    events = service_events(root, "fleet")
    assert [(e["event"], e["version"], e["role"], e["reviewed"]) for e in events] == [("in", "1", "champion", True),
                                                                                     ("out", "1", "champion", True)]
    assert events[0]["server"] == f"127.0.0.1:{port} pid {proc.pid}" and events[0]["time"].endswith("+00:00")


def test_kill_9_loses_at_most_the_last_second_and_leaves_every_segment_readable(fleet_project):
    root = fleet_project
    _approve(root, "1", "none")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve(root, "--port", str(port))
    answered: list[tuple[float, str]] = []
    stop = threading.Event()
    try:
        _wait_up(proc, url)
        records = telemetry_records(root, 20)

        def hammer():
            with httpx.Client(base_url=url, timeout=10) as c:
                i = 0
                while not stop.is_set():
                    try: r = c.post("/predict", json=records[i % 20] if i % 5 else records[:4])
                    except httpx.HTTPError: return   # the server was killed
                    for p in r.json()["predictions"]: answered.append((time.time(), p["prediction_id"]))
                    i += 1
        sender = threading.Thread(target=hammer)
        sender.start()
        time.sleep(3.0)
        t_kill = time.time()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        stop.set(); sender.join(30)
    finally:
        stop.set()
        _stop(proc)
    with warnings.catch_warnings(record=True):   # a segment cut by the kill may be skipped, never an error
        df = read_predictions(prediction_folder(root, "fleet"))
    logged = set(df["prediction_id"])
    old = [i for t, i in answered if t < t_kill - 1.5]
    missing = [i for i in old if i not in logged]
    print(f"\nkill -9: {len(answered)} rows answered, {len(df)} on disk, {len(missing)} answered > 1.5 s before it missing")
    assert len(old) > 50 and not missing, f"{len(missing)} of {len(old)} rows answered > 1.5 s before the kill are missing"
    assert len(logged - {i for _, i in answered}) <= 4   # at most the rows of a request whose answer the kill cut off
    events = service_events(root, "fleet")
    assert [e["event"] for e in events] == ["in"]   # no "out": the server died


def test_challenger_answers_the_same_vessels_every_time_and_the_shadow_is_logged_beside(fleet_project):
    root = fleet_project
    _approve(root, "1", "none")
    with pytest.raises(SailError, match="fleet version 2 may not sail"):   # the challenger goes through the same gate
        ModelServer(root, "fleet", challenger="2")
    _approve(root, "2", "1")   # champion 2; version 1 stays approved
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = _serve_py(root, port, challenger="1", share=0.5, shadow="1")
    records = telemetry_records(root, 60)
    vessels = sorted({r["vessel_id"] for r in records})
    side = {v: "challenger" if share_of(v) < 0.5 else "champion" for v in vessels}
    assert set(side.values()) == {"champion", "challenger"}, side   # both sides have vessels in this sample
    expected = {"1": _expected(root, "1", records), "2": _expected(root, "2", records)}
    answers = []
    try:
        _wait_up(proc, url)
        c = httpx.Client(base_url=url, timeout=30)
        ready = c.get("/ready").json()
        assert (ready["version"], ready["challenger"], ready["shadow"]) == ("2", "1", "1"), ready
        for _ in range(3):
            for i, rec in enumerate(records[:20]): answers.append((i, c.post("/predict", json=rec).json()["predictions"][0]))
            b = c.post("/predict", json=records).json()
            assert b["version"] == "2" and [p["row"] for p in b["predictions"]] == list(range(len(records)))
            answers += [(p["row"], p) for p in b["predictions"]]
        roles_by_vessel: dict[str, set] = {}
        for i, p in answers:
            v = records[i]["vessel_id"]
            roles_by_vessel.setdefault(v, set()).add(p["role"])
            assert p["version"] == ("1" if p["role"] == "challenger" else "2")
            assert abs(p["prediction"] - expected[p["version"]][i]) <= 1e-9
        assert roles_by_vessel == {v: {side[v]} for v in vessels}, roles_by_vessel
        metrics = c.get("/metrics").text
        assert 'seatrial_model_info{model="fleet",reviewed="true",role="challenger",version="1"} 1.0' in metrics
        assert 'seatrial_model_info{model="fleet",reviewed="true",role="shadow",version="1"} 1.0' in metrics
        c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
    _ended(proc)

    df = read_predictions(prediction_folder(root, "fleet"))
    ids = {p["prediction_id"]: p for _, p in answers}
    answered, shadow = df[df["role"] != "shadow"], df[df["role"] == "shadow"]
    assert set(answered["prediction_id"]) == set(ids) and len(answered) == len(ids)
    assert all(ids[r.prediction_id]["role"] == r.role and ids[r.prediction_id]["version"] == r.version
               for r in answered.itertuples())
    # the shadow (version 1) scored every answered row beside whoever answered; never returned
    assert len(shadow) == len(ids) and set(shadow["shadow_of"]) == set(ids) and set(shadow["version"]) == {"1"}
    row_of = {p["prediction_id"]: i for i, p in answers}
    assert max(abs(s.output - expected["1"][row_of[s.shadow_of]]) for s in shadow.itertuples()) <= 1e-9
    events = service_events(root, "fleet")
    assert sorted((e["event"], e["role"], e["version"]) for e in events) == [
        ("in", "challenger", "1"), ("in", "champion", "2"), ("in", "shadow", "1"),
        ("out", "challenger", "1"), ("out", "champion", "2"), ("out", "shadow", "1")]


def test_a_full_disk_for_the_log_is_said_by_ready_while_predictions_answer(fleet_project):
    root = fleet_project
    _approve(root, "1", "none")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # every file the server writes is limited to 4 KiB: the service log's lines fit, no Parquet segment does (EFBIG)
    proc = _serve_py(root, port, preexec=lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096)))
    try:
        _wait_up(proc, url)
        c = httpx.Client(base_url=url, timeout=30)
        records = telemetry_records(root, 10)
        for rec in records: assert c.post("/predict", json=rec).status_code == 200
        t0, ready = time.monotonic(), c.get("/ready")
        while time.monotonic() - t0 < 30 and ready.status_code == 200:
            time.sleep(0.2); ready = c.get("/ready")
        assert ready.status_code == 503 and "could not write a segment" in ready.json()["reason"], ready.text
        assert ready.json()["log"]["healthy"] is False
        again = c.post("/predict", json=records)
        assert again.status_code == 200 and len(again.json()["predictions"]) == 10   # predictions still answer
        metrics = c.get("/metrics").text
        errors = float(next(ln.split()[1] for ln in metrics.splitlines() if ln.startswith("seatrial_log_write_errors_total ")))
        queued = float(next(ln.split()[1] for ln in metrics.splitlines() if ln.startswith("seatrial_log_queue_rows ")))
        assert errors >= 1 and queued == 20, metrics
        # nor can the trees be compiled (gcc's files are larger too): LightGBM answers the batches and /model says why
        t0, bp = time.monotonic(), c.get("/model").json()["batch_predictor"]
        while time.monotonic() - t0 < 60 and "reason" not in bp:
            time.sleep(0.2); bp = c.get("/model").json()["batch_predictor"]
        assert bp["state"] == "lightgbm" and bp["reason"].startswith("the trees could not be compiled"), bp
        assert not list((root / ".seatrial" / "compiled").glob("*.so")), "a library was left behind"
        c.close()
    finally:
        proc.kill(); proc.wait()
    folder = prediction_folder(root, "fleet")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SegmentSkippedWarning)
        assert len(read_predictions(folder)) == 0                     # nothing half-written left behind
    assert not list(folder.glob(".*.partial"))
