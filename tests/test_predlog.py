"""The prediction log under real faults: kill -9, SIGTERM, a full disk (RLIMIT_FSIZE), corrupt segments, a sustained rate."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from seatrial.predlog import PARTIAL, PredictionLog, SegmentSkippedWarning, read_predictions

ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}

# A child that logs fleet-like batches of 1-5 rows about every 2 ms and, after each log() returns, appends
# "<wall time> <id>" lines for the batch to a side file with one unbuffered write (it survives SIGKILL).
CHILD = textwrap.dedent('''
    import json, os, signal, sys, time
    import numpy as np
    from seatrial.predlog import PredictionLog
    root, side, out = sys.argv[1], sys.argv[2], sys.argv[3]
    plog = PredictionLog(root, model="fleet")
    fd = os.open(side, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    def stop(*_):
        ok = plog.close(timeout=20)
        with open(out, "w") as f: json.dump({"drained": ok, **plog.metrics()}, f)
        os._exit(0)
    signal.signal(signal.SIGTERM, stop)
    rng = np.random.default_rng(0)
    while True:
        n = int(rng.integers(1, 6))
        ids = plog.log(raw={"vessel_id": rng.integers(0, 50, n), "speed_kn": rng.random(n) * 15},
                       inputs={f"f{i}": rng.random(n) for i in range(20)},
                       output=rng.random(n), latency_s=0.0005, version="2")
        t = time.time()
        os.write(fd, "".join(f"{t:.6f} {i}\\n" for i in ids).encode())
        time.sleep(0.002)
''')


def start_child(tmp_path: Path) -> tuple[subprocess.Popen, Path, Path]:
    side, out = tmp_path / "logged.txt", tmp_path / "metrics.json"
    p = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "project"), str(side), str(out)], env=ENV)
    return p, side, out


def logged(side: Path) -> list[tuple[float, str]]:
    "The (time, id) pairs the child recorded; a line cut by the kill is left out."
    rows = []
    for line in side.read_text().splitlines():
        parts = line.split(" ")
        if len(parts) == 2 and len(parts[1]) == 36: rows.append((float(parts[0]), parts[1]))
    return rows


def wait_logging(p: subprocess.Popen, side: Path, seconds: float) -> None:
    "Wait until the child has been logging for `seconds` (by its own side file)."
    end = time.monotonic() + 120
    while True:
        assert p.poll() is None, "the logging child died"
        assert time.monotonic() < end, "the child never logged long enough"
        rows = logged(side) if side.exists() else []
        if rows and time.time() - rows[0][0] >= seconds: return
        time.sleep(0.1)


def folder(tmp_path: Path) -> Path:
    return tmp_path / "project" / "predictions" / "fleet"


def test_kill9_loses_at_most_the_last_second(tmp_path):
    p, side, _ = start_child(tmp_path)
    wait_logging(p, side, 4.0)
    t_kill = time.time()
    p.send_signal(signal.SIGKILL)
    p.wait(30)
    rows = logged(side)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a fresh .partial is a write in progress, not an unreadable segment
        df = read_predictions(folder(tmp_path))
    for seg in folder(tmp_path).glob("*.parquet"): pq.read_table(seg, page_checksum_verification=True)
    got = set(df.prediction_id)
    assert df.prediction_id.is_unique
    old = [i for t, i in rows if t < t_kill - 1.5]
    missing_old = [i for i in old if i not in got]
    missing = [(t, i) for t, i in rows if i not in got]
    print(f"\nkill -9: {len(rows)} rows logged, {len(df)} on disk, {len(missing)} missing, "
          f"the oldest missing logged {t_kill - min((t for t, _ in missing), default=t_kill):.2f} s before the kill")
    assert len(old) > 200 and not missing_old, f"{len(missing_old)} of {len(old)} rows logged > 1.5 s before the kill are missing"


def test_sigterm_drains_everything(tmp_path):
    p, side, out = start_child(tmp_path)
    wait_logging(p, side, 2.0)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 0
    m = json.loads(out.read_text())
    df = read_predictions(folder(tmp_path))
    ids = [i for _, i in logged(side)]
    assert m["drained"] and m["rows_written"] == m["rows_logged"] == len(df) and m["dropped_rows"] == 0
    assert set(ids) <= set(df.prediction_id) and len(ids) > 500
    assert not list(folder(tmp_path).glob(f".*{PARTIAL}"))


# A child whose files may not grow beyond 4 kB (RLIMIT_FSIZE binds root too; SIGXFSZ ignored so write() fails with
# EFBIG): the first segment fails part-way through being written. Then the limit is lifted, as if room was made.
FULL = textwrap.dedent('''
    import json, os, resource, signal, sys, time
    import numpy as np
    from seatrial.predlog import PARTIAL, PredictionLog
    root, out = sys.argv[1], sys.argv[2]
    def until(cond):
        end = time.monotonic() + 60
        while not cond():
            assert time.monotonic() < end
            time.sleep(0.02)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    plog = PredictionLog(root, model="fleet", max_age_s=0.2, queue_rows=300)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (4000, hard))
    rng = np.random.default_rng(1)
    ids = list(plog.log(inputs={f"f{i}": rng.random(200) for i in range(20)}, output=rng.random(200), version="2"))
    until(lambda: plog.write_errors >= 2)            # failed, and failed again on the retry
    during = {"healthy": plog.healthy, "reason": plog.reason, "files": sorted(os.listdir(plog.folder))}
    during["accepted"] = len(plog.log(output=rng.random(100), version="2"))   # 200 held + 100 = 300: fits
    during["dropped"] = plog.log(output=rng.random(5), version="2").tolist()  # 305 > 300: dropped, no wait
    during["metrics"] = plog.metrics()
    resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    until(lambda: plog.healthy)
    drained = plog.close(timeout=20)
    with open(out, "w") as f: json.dump({"during": during, "after": plog.metrics(), "drained": drained, "ids": ids}, f)
''')


def test_full_disk_keeps_rows_and_leaves_nothing_corrupt(tmp_path):
    out = tmp_path / "out.json"
    subprocess.run([sys.executable, "-c", FULL, str(tmp_path / "project"), str(out)], env=ENV, check=True, timeout=120)
    r = json.loads(out.read_text())
    d, after = r["during"], r["after"]
    assert not d["healthy"] and "could not write a segment of 200 predictions rows" in d["reason"]
    assert "File too large" in d["reason"], d["reason"]
    assert d["files"] == [], d["files"]   # no segment and no temporary file left by the failed writes
    assert d["accepted"] == 100 and len(d["dropped"]) == 5 and d["metrics"]["dropped_rows"] == 5
    assert d["metrics"]["queue_rows"] == 300
    assert r["drained"] and after["rows_written"] == 300 and after["write_errors"] >= 2
    df = read_predictions(folder(tmp_path))
    assert len(df) == 300 and set(r["ids"]) <= set(df.prediction_id)
    assert not list(folder(tmp_path).glob(".*"))


def test_corrupt_segments_are_skipped_with_a_warning(tmp_path):
    rng = np.random.default_rng(2)
    with PredictionLog(tmp_path, model="fleet") as plog:
        plog.log(inputs={f"f{i}": rng.random(20_000) for i in range(5)}, output=rng.random(20_000), version="1")
        ids = plog.log(output=rng.random(3), version="1")
    f = plog.folder
    big, small = sorted(f.glob("p-*.parquet"), key=lambda p: p.stat().st_size, reverse=True)
    data = bytearray(big.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 64] = os.urandom(64)                 # garbage bytes inside a data page: its checksum fails
    big.write_bytes(bytes(data))
    (f / "p-0000000000000000001-0000000000000000002-aaaaaaaa-000009.parquet").write_bytes(small.read_bytes()[:-30])
    stale = f / f".p-0000000000000000001-0000000000000000002-aaaaaaaa-000010.parquet{PARTIAL}"
    stale.write_bytes(small.read_bytes()[:100])
    os.utime(stale, (1, 1))
    with pytest.warns(SegmentSkippedWarning) as caught:
        df = read_predictions(f)
    said = [str(w.message) for w in caught]
    assert len(said) == 3 and any(big.name in s for s in said) and any("-000009" in s for s in said)
    assert any("interrupted write" in s for s in said)
    assert list(df.prediction_id) == list(ids)


def test_sustained_rate_stays_bounded_and_complete(tmp_path):
    "2,000 one-row batches a second for 10 s; then the log() cost and the writer's capacity, printed."
    raw = {k: np.array([1.0]) for k in ("vessel_id", "lat", "lon", "speed_kn", "sog_kn", "heading", "draught", "trim", "x")}
    inputs = {f"f{i}": np.array([0.5]) for i in range(20)}
    out = np.array([0.25])
    plog = PredictionLog(tmp_path, model="fleet")
    depth, start = [], time.perf_counter()
    for k in range(20_000):
        ahead = start + k / 2000 - time.perf_counter()
        if ahead > 0: time.sleep(ahead)   # sleeping, like a server waiting for its next request
        plog.log(raw=raw, inputs=inputs, output=out, latency_s=0.0005, version="2")
        if k % 200 == 0: depth.append(plog.queue_depth)
    elapsed = time.perf_counter() - start
    assert plog.close(timeout=30)
    m = plog.metrics()
    assert m["rows_written"] == m["rows_logged"] == 20_000 and m["dropped_rows"] == 0 and m["write_errors"] == 0
    assert max(depth) < plog.queue_rows
    assert len(read_predictions(plog.folder)) == 20_000

    cost = PredictionLog(tmp_path / "cost", model="fleet")
    ns = []
    for _ in range(20_000):
        t = time.perf_counter_ns()
        cost.log(raw=raw, inputs=inputs, output=out, latency_s=0.0005, version="2")
        ns.append(time.perf_counter_ns() - t)
    t = time.perf_counter()
    assert cost.close(timeout=60)
    drain = time.perf_counter() - t
    us = np.array(ns) / 1e3
    print(f"\nsustained: 20,000 one-row batches in {elapsed:.1f} s, {m['segments_written']} segments, "
          f"largest queue {max(depth)} rows; log() median {np.median(us):.1f} us, p99 {np.percentile(us, 99):.1f} us; "
          f"writer capacity {20_000 / drain:,.0f} rows/s (one-row batches, 37 columns)")


def test_threads_logging_at_once_lose_nothing(tmp_path):
    "Request threads of one server log at the same time: every row lands once, with its own id."
    import threading
    plog = PredictionLog(tmp_path, model="fleet", max_age_s=0.2)
    ids: list = []

    def work(k: int) -> None:
        for i in range(3000):
            ids.extend(plog.log(raw={"vessel_id": np.array([k])}, output=np.array([float(i)]), version="2",
                                role="challenger" if k % 2 else "champion"))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads: t.start()
    for t in threads: t.join()
    assert plog.close(timeout=30)
    df = read_predictions(plog.folder)
    assert len(ids) == len(set(ids)) == 12_000 and sorted(df.prediction_id) == sorted(ids)
    assert (df.groupby("r_vessel_id").size() == 3000).all()
    assert set(df[df.r_vessel_id % 2 == 1].role) == {"challenger"}


def test_one_row_batches_read_back_as_the_arrays_they_were_logged_as(tmp_path):
    """A one-row batch is queued as plain values (the request path's shortcut): alone in a segment, or mixed with many-row
    batches of the same columns, every value and every column type reads back as when the same rows are logged at once."""
    raw = {"time": np.array(["2025-07-01T12:00", "2025-07-01T13:00", "2025-07-01T14:00"], dtype="datetime64[ns]"),
           "vessel_id": np.array(["IMO 9321483", None, "IMO 9074729"], dtype=object),
           "speed_kn": np.array([12.5, np.nan, 3.0]), "laden": np.array([True, False, True])}
    out = np.array([31.2, 28.0, 9.5])

    def logged(folder: Path, batches: list[slice]) -> pd.DataFrame:
        with PredictionLog(folder, model="fleet") as plog:
            for s in batches:
                plog.log(raw={k: v[s] for k, v in raw.items()}, inputs={"stw_cubed": raw["speed_kn"][s] ** 3},
                         output=out[s], version="2", reviewed=False)
        return read_predictions(plog.folder).drop(columns=["prediction_id", "time"]).reset_index(drop=True)

    at_once = logged(tmp_path / "at_once", [slice(0, 3)])
    one_by_one = logged(tmp_path / "one_by_one", [slice(i, i + 1) for i in range(3)])
    mixed = logged(tmp_path / "mixed", [slice(0, 1), slice(1, 3)])
    assert list(at_once.columns) == ["model", "version", "role", "output", "latency_s", "reviewed", "r_time", "r_vessel_id",
                                     "r_speed_kn", "r_laden", "x_stw_cubed"]
    for got in (one_by_one, mixed):
        pd.testing.assert_frame_equal(got, at_once)
    assert len(at_once) == 3 and at_once.output.tolist() == out.tolist() and not at_once.reviewed.any()
    assert at_once.r_vessel_id.isna().tolist() == [False, True, False] and at_once.r_time.dtype.kind == "M"
    assert at_once.r_laden.dtype == bool and np.isnan(at_once.r_speed_kn[1]) and at_once.x_stw_cubed[0] == 12.5 ** 3
