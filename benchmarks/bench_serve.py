"""The model server beside its peers, one run, one machine: `seatrial serve` against `mlflow models serve` of the same model
and a bare FastAPI endpoint calling `booster.predict`.

The three servers, each started alone (never two at once), on 127.0.0.1, under uvicorn:
- ours: `seatrial serve` on a demo project with fleet version 1 approved (the real `seatrial review approve`). Requests
  carry raw telemetry fields (time, vessel id, lat/lon, speeds, heading, draught, trim): the server checks them,
  derives the 20 model inputs (entity join, weather grid, registered features), predicts (one row: LightGBM's single-row
  path; a batch: the trees compiled by tl2cgen, waited for before timing, or LightGBM with --no-compile), counts metrics
  and logs.
- mlflow: `mlflow models serve -m models:/fleet/1 --env-manager local` of the registered version, through the pyfunc
  loader it was logged with (`seatrial.lightgbm_pyfunc`, in the model's code/ folder: `vessel_type` arrives as text and
  is typed to the training categories; `booster.predict`, one thread for fewer than a million cells). Requests carry the
  20 ready model inputs (`dataframe_split`).
- bare: a FastAPI endpoint (this file, --bare-app) reading `{"rows": [[20 numbers]]}` with `await request.json()`,
  calling `booster.predict(X, num_threads=1)` and answering the list. Requests carry the 20 ready model inputs.
The records: telemetry rows of the demo that derive without a per-row error (so every server answers every row); the
single-row workloads cycle through 500 of them, the batch is 10,000.

Workloads, each server in turn:
- sequential: 2,000 single-row requests, one keep-alive `http.client.HTTPConnection` (the standard library's: less
  client overhead than httpx; the client's own time is in every figure, equally for all three), bodies encoded before
  timing, a response read to its end and its status checked (not parsed); after 200 warm-up requests. p50, p99, req/s.
- 16 concurrent clients: 16 threads, each its own keep-alive connection, 2,000 requests in all; throughput (wall time)
  and p99 of the request times. The clients share the 2 cores with the server (one Python process: the GIL), equally
  for all three.
- a 10,000-row batch end to end: the pre-encoded body sent, the answer read and `json.loads`-ed, its 10,000 predictions
  counted; 5 times, median and best. Ours: JSON records, an Arrow IPC stream and a Parquet file of the raw columns.
- ours only: the logger keeps up. One client sends single-row requests without pause for 60 s (--logger-seconds) while
  the log's queue depth is read from /metrics every second: its largest depth, and rows predicted = rows written, read
  back from the Parquet log after SIGTERM drained the server.
- ours only: a hot swap under load. A new version is made (a second pipeline run, train.valid_fraction=0.3) and approved
  with the real CLI while 16 clients send requests without pause; failed requests (must be 0), time to the first answer
  by the new version, p99 overall and in the swap window (the approval's start to 1 s after that first answer).
Every server's answers are checked against the in-process booster on the deriver's inputs (largest |difference| printed).
Ratios are "times faster than ours" turned around: peer time / our time for latencies, our rate / peer rate for rates
(above 1: ours is faster).

Usage: python benchmarks/bench_serve.py [--project DIR] [--requests 2000] [--clients 16] [--batch 10000] [--json out.json]
(--project: a demo project whose fleet version 1 is the approved champion; without it, one is made in a temporary
folder: `seatrial demo --rows 40000`, about 100 s). The peers run under OMP_NUM_THREADS=1 and every server under
OMP_WAIT_POLICY=PASSIVE (set here). Ours is left to choose its threads: it gives each LightGBM call its number, and
OpenMP's limit would cap the compiled trees at one. Timings depend on the machine and its load (printed at start and end); they never gate tests.
"""
from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEATRIAL = Path(sys.executable).parent / "seatrial"
FIELDS = ["time", "vessel_id", "lat", "lon", "stw_kn", "sog_kn", "heading_deg", "draught_m", "trim_m"]
WARMUP, DISTINCT, BATCH_REPEAT = 200, 500, 5


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    path = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"   # mlflow serve runs `uvicorn` from PATH
    return env | {"OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE", "PATH": path} | extra


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


# ---------------------------------------------------------------------------------------------------------------- project
def _seatrial(root: Path, *args: str) -> str:
    proc = subprocess.run([str(SEATRIAL), "--root", str(root), *args], cwd=root, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0: raise SystemExit(f"seatrial {' '.join(args)} failed:\n{proc.stderr}")
    return proc.stdout


def _approve(root: Path, version: str, champion: str) -> None:
    "Approve a version with the real CLI, on the evidence digest `review show` prints."
    digest = re.search(r"^evidence ([0-9a-f]{64})$", _seatrial(root, "review", "show", "fleet", version), re.M).group(1)
    _seatrial(root, "review", "approve", "fleet", version, "-m", "benchmark", "--evidence", digest, "--champion", champion,
              "--user", "bench")


def make_project(root: Path) -> None:
    "A demo project (40k rows) with fleet version 1 approved by the real CLI."
    _seatrial(root, "demo", "--rows", "40000", "-q")
    _approve(root, "1", "none")


def second_version(root: Path) -> str:
    "A version awaiting review for the swap (another model: train.valid_fraction=0.3), made once per project."
    from seatrial.tracking import alias_version
    _seatrial(root, "demo", "--rows", "40000", "-q", "-p", "train.valid_fraction=0.3")
    version = alias_version(root, "fleet", "candidate")
    if version is None: raise SystemExit("the second run registered no candidate version to swap to")
    return str(version)


def _parquet(table) -> bytes:
    "A table as a Parquet file's bytes (pyarrow's defaults: snappy, one row group)."
    import io
    import pyarrow.parquet as pq
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()


def workload_data(root: Path, n_batch: int) -> dict:
    "Records that derive cleanly, their model inputs, and every request body, encoded once."
    import numpy as np
    import pandas as pd
    import pyarrow as pa
    from seatrial.derive import Deriver
    from seatrial.request import RequestSchema
    from seatrial.sail import approved_model
    m = approved_model(root, "fleet")
    booster = m.load_booster(num_threads=1)
    t = pd.read_parquet(root / "data" / "demo" / "telemetry.parquet", columns=FIELDS)
    t = t.iloc[np.random.default_rng(0).permutation(len(t))].reset_index(drop=True)
    records = []
    for rec in t.to_dict("records"):
        rec["time"] = rec["time"].isoformat().replace("+00:00", "Z")
        records.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
    deriver = Deriver.for_model(m)
    schema = RequestSchema.for_deriver(deriver)
    good = []   # records the server's checks pass and the deriver answers, as the server does it
    for start in range(0, len(records), 10_000):
        checked = schema.parse(json.dumps(records[start:start + 10_000]).encode(), "application/json")
        good += (start + checked.rows[deriver.derive(checked.frame()).rows]).tolist()
        if len(good) >= n_batch: break
    if len(good) < n_batch: raise SystemExit(f"only {len(good)} records pass the checks; the batch needs {n_batch}")
    good = good[:n_batch]
    records = [records[i] for i in good]
    d = deriver.derive(records)
    assert not d.errors and len(d.rows) == n_batch, d.errors
    matrix, inputs = d.matrix, d.inputs
    expected = booster.predict(matrix)
    cats = list(d.categories)
    mlflow_rows = [[(None if isinstance(v, float) and math.isnan(v) else (str(v) if c in cats else v))
                    for c, v in zip(d.features, row)] for row in inputs.astype(object).itertuples(index=False)]
    bare_rows = [[None if math.isnan(v) else v for v in row] for row in matrix.tolist()]
    raw = t.iloc[good].reset_index(drop=True)
    sink = pa.BufferOutputStream()
    table = pa.Table.from_pandas(raw, preserve_index=False)
    with pa.ipc.new_stream(sink, table.schema) as w: w.write_table(table)
    enc = lambda o: json.dumps(o).encode()   # noqa: E731
    mlflow_body = lambda rows: enc({"dataframe_split": {"columns": d.features, "data": rows}})   # noqa: E731
    return {
        "model": m, "expected": expected, "features": d.features,
        "ours": [enc(r) for r in records[:DISTINCT]], "ours_batch": enc(records),
        "ours_arrow": sink.getvalue().to_pybytes(), "ours_parquet": _parquet(table),
        "mlflow": [mlflow_body([r]) for r in mlflow_rows[:DISTINCT]], "mlflow_batch": mlflow_body(mlflow_rows),
        "bare": [enc({"rows": [r]}) for r in bare_rows[:DISTINCT]], "bare_batch": enc({"rows": bare_rows}),
    }


# -------------------------------------------------------------------------------------------------------------- servers
def bare_app(model_file: str):
    "The bare FastAPI endpoint: ready model inputs in, booster.predict (one thread) out."
    import lightgbm as lgb
    import numpy as np
    from fastapi import FastAPI, Request
    booster = lgb.Booster(model_file=model_file)
    app = FastAPI()

    async def predict(request):
        X = np.array((await request.json())["rows"], dtype=float)
        return {"predictions": booster.predict(X, num_threads=1).tolist()}
    predict.__annotations__ = {"request": Request, "return": dict}   # resolved here: this module's annotations are strings
    app.post("/predict")(predict)
    return app


def compiled_model(port: int, limit_s: float = 180) -> dict:
    "Our /model once the batch predictor has settled: the compiled trees checked, or LightGBM with the reason."
    t0 = time.monotonic()
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port)
        conn.request("GET", "/model"); model = json.loads(conn.getresponse().read())
        conn.close()
        bp = model["batch_predictor"]
        if bp["state"] == "compiled" or "reason" in bp or time.monotonic() - t0 > limit_s: break
        time.sleep(0.2)
    print(f"ours: batches by {bp['by']} after {time.monotonic() - t0:.1f} s "
          + (f"(compiled and checked in {bp['seconds']:.1f} s, {'kept from before' if bp['reused'] else 'compiled now'}; "
             f"largest difference from LightGBM {bp['largest_difference']:.3g} on {bp['rows_checked']:,} rows)"
             if bp["state"] == "compiled" else f"({bp.get('reason') or bp['state']})"), flush=True)
    return model


def mlflow_model(root: Path, m) -> tuple[str, str]:
    "(model URI to serve, what it is): the registered version, after checking that its pyfunc predicts its own input example."
    os.environ.update(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}", MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR="false")
    import logging
    import warnings
    import mlflow
    import mlflow.pyfunc
    warnings.showwarning = lambda *a, **k: None   # mlflow's advice on type hints and input examples (it resets filters itself)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    import pandas as pd
    uri = f"models:/{m.name}/{m.version}"
    info = mlflow.models.get_model_info(uri)
    local = Path(mlflow.artifacts.download_artifacts(uri))
    example = json.loads((local / "serving_input_example.json").read_text())["dataframe_split"]
    loader = info.flavors["python_function"]["loader_module"]
    try:
        mlflow.pyfunc.load_model(uri).predict(pd.DataFrame(example["data"], columns=example["columns"]))
    except Exception as e:
        raise SystemExit(f"{uri} does not predict its own input example under pyfunc (loader {loader}: {type(e).__name__}: "
                         f"{str(e).splitlines()[0]}). Models logged before seatrial shipped its pyfunc loader cannot be "
                         "served by mlflow; run the pipeline again for a new version.") from None
    return uri, f"{uri} as registered (pyfunc loader {loader})"


class Server:
    "A server process started alone, its output to a file, stopped (SIGTERM, then kill) when done."
    def __init__(self, what: str, cmd: list[str], port: int, ready_path: str, cwd: Path, env: dict, folder: Path):
        self.what, self.port, self.log = what, port, open(folder / f"{what}.log", "w+")
        self.proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        t0 = time.monotonic()
        while True:
            if self.proc.poll() is not None: raise SystemExit(f"{what} stopped:\n{self._tail()}")
            try:
                c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                c.request("GET", ready_path)
                if c.getresponse().status == 200: break
            except OSError: pass
            if time.monotonic() - t0 > 180: raise SystemExit(f"{what} did not answer within 180 s:\n{self._tail()}")
            time.sleep(0.25)
        self.start_s = time.monotonic() - t0

    def _tail(self) -> str:
        self.log.flush(); self.log.seek(0)
        return self.log.read()[-3000:]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)   # its own session: uvicorn and anything it started
            try: self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, 9); self.proc.wait()
        self.log.close()


# -------------------------------------------------------------------------------------------------------------- clients
def _post(conn: http.client.HTTPConnection, path: str, body: bytes, ctype: str) -> bytes:
    conn.request("POST", path, body, {"Content-Type": ctype})
    r = conn.getresponse()
    data = r.read()
    if r.status != 200: raise SystemExit(f"POST {path} answered {r.status}: {data[:500]!r}")
    return data


def sequential(port: int, path: str, bodies: list[bytes], n: int) -> dict:
    "n single-row requests on one keep-alive connection, after a warm-up."
    conn = http.client.HTTPConnection("127.0.0.1", port)
    for i in range(WARMUP): _post(conn, path, bodies[i % len(bodies)], "application/json")
    times = []
    t_all = time.perf_counter()
    for i in range(n):
        t0 = time.perf_counter()
        _post(conn, path, bodies[i % len(bodies)], "application/json")
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - t_all
    conn.close()
    return _summary(times, wall)


def concurrent(port: int, path: str, bodies: list[bytes], n: int, clients: int) -> dict:
    "n single-row requests from `clients` threads, each its own keep-alive connection."
    per, times, lock, errors = n // clients, [], threading.Lock(), []
    conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(clients)]
    for c in conns: _post(c, path, bodies[0], "application/json")
    go = threading.Barrier(clients + 1)

    def client(k: int) -> None:
        mine = []
        go.wait()
        try:
            for i in range(per):
                t0 = time.perf_counter()
                _post(conns[k], path, bodies[(k * per + i) % len(bodies)], "application/json")
                mine.append(time.perf_counter() - t0)
        except BaseException as e:
            errors.append(repr(e))
        with lock: times.extend(mine)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads: t.start()
    go.wait()
    t_all = time.perf_counter()
    for t in threads: t.join()
    wall = time.perf_counter() - t_all
    for c in conns: c.close()
    if errors: raise SystemExit(f"{len(errors)} clients failed: {errors[0]}")
    return _summary(times, wall)


def batch(port: int, path: str, body: bytes, ctype: str, n_rows: int, values) -> dict:
    "One large request, end to end (send, answer read and parsed), BATCH_REPEAT times; the predictions kept for the check."
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    times, preds = [], None
    for _ in range(BATCH_REPEAT):
        t0 = time.perf_counter()
        out = json.loads(_post(conn, path, body, ctype))
        preds = values(out)
        times.append(time.perf_counter() - t0)
        if len(preds) != n_rows: raise SystemExit(f"{path} answered {len(preds)} predictions for {n_rows} rows")
    conn.close()
    return {"median_ms": statistics.median(times) * 1e3, "best_ms": min(times) * 1e3, "preds": preds}


def swap_under_load(root: Path, port: int, bodies: list[bytes], clients: int, version: str, champion: str) -> dict:
    """`clients` threads send single-row requests without pause while `version` is approved with the real CLI (the
    champion moves; the server's watcher loads, checks and swaps it): failures (must be 0), p99 overall and in the swap
    window (from the approval's start to 1 s after the first answer by the new version), time to the first new answer."""
    stop, lock, errors = threading.Event(), threading.Lock(), []
    seen: list[tuple[float, float, str]] = []   # (start, seconds, version)

    def client(k: int) -> None:
        conn, mine, i = http.client.HTTPConnection("127.0.0.1", port, timeout=30), [], 0
        while not stop.is_set():
            t0 = time.perf_counter()
            try:
                conn.request("POST", "/predict", bodies[(k * 97 + i) % len(bodies)], {"Content-Type": "application/json"})
                r = conn.getresponse()
                data = r.read()
                if r.status != 200: errors.append(f"{r.status}: {data[:200]!r}")
                else: mine.append((t0, time.perf_counter() - t0, json.loads(data)["predictions"][0]["version"]))
            except (OSError, http.client.HTTPException) as e:
                errors.append(repr(e)); conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            i += 1
        with lock: seen.extend(mine)
    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads: t.start()
    time.sleep(3)
    t_approve = time.perf_counter()
    _approve(root, version, champion)
    t_approved = time.perf_counter()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.2)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        conn.request("GET", "/ready"); ready = json.loads(conn.getresponse().read()); conn.close()
        if ready["version"] == version: break
    time.sleep(2)
    stop.set()
    for t in threads: t.join()
    new = [t0 for t0, _, v in seen if v == version]
    first_new = min(new) if new else None
    window = [s for t0, s, _ in seen if t_approve <= t0 <= (first_new or t_approve) + 1.0]
    q = lambda xs: statistics.quantiles(xs, n=100, method="inclusive")[98] * 1e3 if len(xs) >= 2 else float("nan")   # noqa: E731
    return {"requests": len(seen), "failures": len(errors), "first_failure": errors[0] if errors else None,
            "versions": sorted({v for _, _, v in seen}), "p99_ms": q([s for _, s, _ in seen]), "window_p99_ms": q(window),
            "window_requests": len(window), "approve_s": t_approved - t_approve,
            "first_new_after_approval_began_s": None if first_new is None else first_new - t_approve}


def logger_keeps_up(port: int, bodies: list[bytes], seconds: float) -> dict:
    """Single-row requests as fast as one client sends them for `seconds`, the log's queue read from /metrics every
    second: its largest depth, and rows answered against rows the log wrote (read again after the server drained)."""
    conn, mon = http.client.HTTPConnection("127.0.0.1", port), http.client.HTTPConnection("127.0.0.1", port)
    depth, answered, i = [], 0, 0
    end, next_look = time.monotonic() + seconds, time.monotonic() + 1
    while time.monotonic() < end:
        _post(conn, "/predict", bodies[i % len(bodies)], "application/json")
        answered, i = answered + 1, i + 1
        if time.monotonic() >= next_look:
            next_look += 1
            mon.request("GET", "/metrics")
            m = re.search(r"^seatrial_log_queue_rows (\S+)$", mon.getresponse().read().decode(), re.M)
            depth.append(float(m.group(1)))
    conn.close(); mon.close()
    return {"seconds": seconds, "answered": answered, "rate": answered / seconds, "max_queue_rows": max(depth),
            "last_queue_rows": depth[-1], "queue_samples": len(depth)}


def _summary(times: list[float], wall: float) -> dict:
    q = statistics.quantiles(times, n=100, method="inclusive")
    return {"p50_ms": statistics.median(times) * 1e3, "p99_ms": q[98] * 1e3, "rps": len(times) / wall, "n": len(times)}


def _diff(got, expected) -> float:
    import numpy as np
    return float(np.abs(np.asarray(got, dtype=float) - expected[: len(got)]).max())


# ----------------------------------------------------------------------------------------------------------------- main
def measure(what: str, srv: Server, path: str, single: list[bytes], batches: list[tuple[str, bytes, str]], values,
            data: dict, args) -> dict:
    out = {"start_s": srv.start_s}
    out["seq"] = sequential(srv.port, path, single, args.requests)
    out["conc"] = concurrent(srv.port, path, single, args.requests, args.clients)
    check = http.client.HTTPConnection("127.0.0.1", srv.port)
    single_preds = [values(json.loads(_post(check, path, b, "application/json")))[0] for b in single[:50]]
    check.close()
    out["diff"] = _diff(single_preds, data["expected"])
    for label, body, ctype in batches:
        b = batch(srv.port, path, body, ctype, args.batch, values)
        out["diff"] = max(out["diff"], _diff(b.pop("preds"), data["expected"]))
        out[label] = b
    print(f"  {what}: started in {srv.start_s:.1f} s; sequential p50 {out['seq']['p50_ms']:.2f} ms; "
          f"largest |diff| vs in-process booster {out['diff']:.1e}; load {_load()}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path, help="a demo project with fleet version 1 approved (default: make one)")
    ap.add_argument("--requests", type=int, default=2000)
    ap.add_argument("--clients", type=int, default=16)
    ap.add_argument("--batch", type=int, default=10_000)
    ap.add_argument("--no-compile", action="store_true", help="serve ours with `seatrial serve --no-compile` (LightGBM only)")
    ap.add_argument("--logger-seconds", type=float, default=60, help="the logger run's length (0: none)")
    ap.add_argument("--no-swap", action="store_true", help="skip the swap under load (it makes a new version, ~100 s)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--bare-app", nargs=2, metavar=("PORT", "MODEL_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.bare_app:   # the bare FastAPI server's own process
        import uvicorn
        uvicorn.run(bare_app(args.bare_app[1]), host="127.0.0.1", port=int(args.bare_app[0]), log_level="warning",
                    access_log=False)
        return
    os.environ.update(OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    t_start, load_start = time.time(), _load()
    print(f"bench_serve: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"load average at start {load_start}")
    print("versions: " + ", ".join(f"{p} {metadata.version(p)}" for p in
                                   ("mlflow", "lightgbm", "tl2cgen", "treelite", "starlette", "fastapi", "uvicorn", "uvloop",
                                    "httptools")))
    with tempfile.TemporaryDirectory(prefix="bench_serve_") as tmp:
        tmp = Path(tmp)
        root = args.project
        if root is None:
            root = tmp / "project"
            root.mkdir()
            t0 = time.monotonic()
            make_project(root)
            print(f"project: seatrial demo --rows 40000 and an approval, {time.monotonic() - t0:.0f} s")
        root = root.resolve()
        data = workload_data(root, args.batch)
        m = data["model"]
        print(f"model: {m.name} version {m.version}, {len(m.features)} inputs, {m.model_path}")
        results = {}

        port = _free_port()
        srv = Server("ours", [str(SEATRIAL), "--root", str(root), "serve", "--port", str(port),
                              *(["--no-compile"] if args.no_compile else [])], port, "/ready", root,
                     {k: v for k, v in _env().items() if k != "OMP_NUM_THREADS"}, tmp)
        try:
            model = compiled_model(port)
            results["ours_batch_predictor"] = model["batch_predictor"]
            conn = http.client.HTTPConnection("127.0.0.1", port)
            conn.request("GET", "/metrics"); metric_text = conn.getresponse().read().decode()
            conn.close()
            logging = "seatrial_log_rows_written" in metric_text
            print(f"ours: {model['name']} version {model['version']} approved by {model['approved_by']}, predictor "
                  f"{model['predictor']}; prediction log {'ON' if logging else 'not in this server yet'}")
            ours_values = lambda o: [p["prediction"] for p in o["predictions"]]   # noqa: E731
            results["ours"] = measure("ours", srv, "/predict", data["ours"],
                                      [("batch_json", data["ours_batch"], "application/json"),
                                       ("batch_arrow", data["ours_arrow"], "application/vnd.apache.arrow.stream"),
                                       ("batch_parquet", data["ours_parquet"], "application/vnd.apache.parquet")],
                                      ours_values, data, args)
            if args.logger_seconds:
                since = time.time()
                results["logger"] = lg = logger_keeps_up(port, data["ours"], args.logger_seconds)
                time.sleep(2)   # the log's age limit is 1 s: everything answered is written by now
                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.request("GET", "/metrics"); metric_text = conn.getresponse().read().decode()
                conn.close()
                figure = lambda name: float(re.search(rf"^{name} (\S+)$", metric_text, re.M).group(1))   # noqa: E731
                lg["predicted_rows"] = figure(r'seatrial_predictions_count\{role="champion"\}')
                lg["written_rows"] = figure("seatrial_log_rows_written_total")
                lg["dropped_rows"] = figure("seatrial_log_dropped_rows_total")
        finally:
            srv.stop()
        if args.logger_seconds:
            from seatrial.predlog import prediction_folder, read_predictions
            import pandas as pd
            logged = read_predictions(prediction_folder(root, "fleet"), since=pd.Timestamp(since, unit="s", tz="UTC"))
            lg["logged_in_window_after_drain"] = len(logged)
            print(f"  logger: {lg['answered']:,} single-row requests in {lg['seconds']:.0f} s ({lg['rate']:.0f}/s); log queue "
                  f"at most {lg['max_queue_rows']:.0f} rows, {lg['last_queue_rows']:.0f} at the end; rows predicted since the "
                  f"server started {lg['predicted_rows']:.0f}, written {lg['written_rows']:.0f}, dropped "
                  f"{lg['dropped_rows']:.0f}; in the log for the run's window after SIGTERM {len(logged):,} (answered "
                  f"{lg['answered']:,})", flush=True)

        if not args.no_swap:
            t0 = time.monotonic()
            version = second_version(root)
            print(f"swap: version {version} made in {time.monotonic() - t0:.0f} s", flush=True)
            port = _free_port()
            srv = Server("ours-swap", [str(SEATRIAL), "--root", str(root), "serve", "--port", str(port), "--poll", "2"],
                         port, "/ready", root, _env(), tmp)
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port)
                conn.request("GET", "/ready"); champion = json.loads(conn.getresponse().read())["version"]
                conn.close()
                results["swap"] = sw = swap_under_load(root, port, data["ours"], args.clients, version, champion)
            finally:
                srv.stop()
            print(f"  swap under load ({args.clients} clients, version {champion} -> {version}, --poll 2): {sw['requests']:,} "
                  f"requests, {sw['failures']} failed{'' if not sw['failures'] else ' (first: ' + sw['first_failure'] + ')'}; "
                  f"versions answering {', '.join(sw['versions'])}; the approval command ran {sw['approve_s']:.1f} s, the first "
                  f"answer by the new version came {sw['first_new_after_approval_began_s']:.1f} s after it began; p99 {sw['p99_ms']:.1f} ms overall, "
                  f"{sw['window_p99_ms']:.1f} ms in the swap window ({sw['window_requests']:,} requests)", flush=True)

        uri, what = mlflow_model(root, m)
        print(f"mlflow: {what}")
        port = _free_port()
        srv = Server("mlflow", [str(Path(sys.executable).parent / "mlflow"), "models", "serve", "-m", uri, "--env-manager",
                                "local", "-h", "127.0.0.1", "-p", str(port)], port, "/ping", root,
                     _env(MLFLOW_TRACKING_URI=f"sqlite:///{root / 'mlflow.db'}"), tmp)
        try:
            results["mlflow"] = measure("mlflow", srv, "/invocations", data["mlflow"],
                                        [("batch_json", data["mlflow_batch"], "application/json")],
                                        lambda o: o["predictions"], data, args)
        finally:
            srv.stop()

        port = _free_port()
        srv = Server("bare", [sys.executable, __file__, "--bare-app", str(port), str(m.model_path)], port, "/docs", root,
                     _env(), tmp)
        try:
            results["bare"] = measure("bare FastAPI", srv, "/predict", data["bare"],
                                      [("batch_json", data["bare_batch"], "application/json")],
                                      lambda o: o["predictions"], data, args)
        finally:
            srv.stop()

    _table(results, args)
    load_end = _load()
    print(f"load average at end {load_end}; the run took {time.time() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"load_start": load_start, "load_end": load_end, "results": results}, indent=2))


def _table(r: dict, args) -> None:
    rows = [  # label, (workload, figure), lower is better
        (f"{args.requests:,} sequential, p50 (ms)", ("seq", "p50_ms"), True),
        (f"{args.requests:,} sequential, p99 (ms)", ("seq", "p99_ms"), True),
        (f"{args.requests:,} sequential, req/s", ("seq", "rps"), False),
        (f"{args.clients} clients, req/s", ("conc", "rps"), False),
        (f"{args.clients} clients, p99 (ms)", ("conc", "p99_ms"), True),
        (f"{args.batch:,}-row batch JSON, median (ms)", ("batch_json", "median_ms"), True),
        (f"{args.batch:,}-row batch JSON, best (ms)", ("batch_json", "best_ms"), True),
        (f"{args.batch:,}-row batch Arrow IPC, median (ms)", ("batch_arrow", "median_ms"), True),
        (f"{args.batch:,}-row batch Arrow IPC, best (ms)", ("batch_arrow", "best_ms"), True),
        (f"{args.batch:,}-row batch Parquet, median (ms)", ("batch_parquet", "median_ms"), True),
        (f"{args.batch:,}-row batch Parquet, best (ms)", ("batch_parquet", "best_ms"), True),
    ]
    def get(who: str, key: tuple) -> float | None: return r[who].get(key[0], {}).get(key[1])
    def fmt(v: float | None, rate: bool) -> str: return "-" if v is None else f"{v:.0f}" if rate else f"{v:.2f}"
    def ratio(o: float | None, peer: float | None, lower: bool) -> str:
        return "-" if peer is None or o is None else f"{(peer / o if lower else o / peer):.2f}x"
    print()
    print(f"{'workload':<38}{'ours':>9}{'mlflow':>9}{'bare':>9}   {'mlflow/ours':>11}{'bare/ours':>10}")
    for label, key, lower in rows:
        o, mf, b = get("ours", key), get("mlflow", key), get("bare", key)
        rate = "req/s" in label
        print(f"{label:<38}{fmt(o, rate):>9}{fmt(mf, rate):>9}{fmt(b, rate):>9}   {ratio(o, mf, lower):>11}{ratio(o, b, lower):>10}")
    print("ratios above 1: ours is faster. ours takes raw telemetry fields and derives the inputs; mlflow and bare take the "
          "20 ready inputs.")


if __name__ == "__main__":
    main()
