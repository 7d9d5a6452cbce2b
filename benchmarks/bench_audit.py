"""The audit app at 1M test points against explainerdashboard 0.5.8 on the same LightGBM model and rows.

One benchmark run, side by side:

- The same model on both sides: one `lightgbm.LGBMRegressor` (100 trees, 31 leaves) trained on fleet-like synthetic
  data: the features and target of `seatrial.audit.store.demo_data` (speed through water, wave height, draught, days
  since dry dock, vessel type as 0/1) plus, by default, 15 more numeric features with weaker and weaker effects on the
  target, so the model is as wide as the demo pipeline's (20 features; `--features 5`: demo_data's alone). Explanation
  costs grow with the features (explainerdashboard's SHAP interactions with their square), so a 5-feature model would
  flatter both sides. A second model (other seed, other training rows) is the champion. Both are saved in the work
  folder (`benchmarks/out/audit/`, reused by later runs) as LightGBM native text; the candidate is also pickled, for
  explainerdashboard only, which wants a fitted scikit-learn estimator that LightGBM cannot make from a text file (the
  peer checks that the pickle predicts every row exactly as the text model). The test rows (demo_data with seed 1:
  positions on vessel tracks, times, vessels) go to `rows.parquet`; size N takes its first N rows, on both sides.
- seatrial, per size (default 10k, 100k, 1M), in two fresh processes:
  1. pipeline work (not the app's; shown apart): predictions of candidate and champion, SHAP of every row with
     `seatrial.explain.compute_shap`, written as the evaluate, explain and features stages write them
     (predictions.parquet, shap.parquet, features.parquet, metrics/checks JSON, a dataset config);
  2. the server: `seatrial.audit.store.load_version` reads those files (the app's own load path; "load"), then
     `seatrial.audit.serve.serve_audit` serves `AuditApp` on 127.0.0.1 with an app factory that gives each session a
     new `AuditStore.from_data` over the version loaded once (the default factory would open versions through the
     MLflow registry, which this benchmark has not got). Timed: the first page as an HTTP GET (the server builds the
     session's whole document then: the Review tab's map rasterised by datashader, regime table, histogram), the
     first session's apart (it pays one-time costs); with /usr/bin/chromium and Playwright, a headless browser from
     `goto` until Bokeh's document is idle and a canvas (the map) has drawn pixels (best of 3 new sessions). Then, in
     that browser's live session (each action run as a Bokeh next-tick callback on the server's event loop, as a
     browser event is handled, and timed until every update it queued there has run too): a box selection arriving
     from the map (its BoundsXY stream's event: the store's selection, then every view shown that follows it), "Clear
     selection" (every row again: the costliest re-render), a zoom (the map's RangeXY streams updated and triggered
     together, as a browser zoom does: datashader re-aggregates points and tracks; below the map's threshold there is
     nothing to do on the server), opening the Explanations tab with a selection on (a tab is built when first
     shown), back to Review, and box selections again (the Explanations tab, once built, follows every selection
     too). `--repeat` of each, medians. Without a browser only the HTTP page is timed: Panel holds every update of
     a session until a client has connected, so there would be nothing to time. Server RSS is read at the end (all
     sessions still open), and the process's peak RSS; the browser runs in its own processes, not counted.
- explainerdashboard 0.5.8 (`bench_explainerdashboard.py`, its own venv, one process per size and setting, each with
  `--timeout`): `RegressionExplainer(model, X, y)` + `ExplainerDashboard(explainer)` build time with its defaults
  (SHAP interactions on) and with `shap_interaction=False`, and peak RSS. It computes everything at build time,
  SHAP included, so its build is compared with what a reviewer waits for in seatrial, load + a new session's page;
  seatrial's SHAP values were made by the pipeline before anyone opened the app (its time is in the pipeline table).

The peer's venv (explainerdashboard and its dash stack are kept out of the project's environment):

    python3 -m venv benchmarks/.venv-peer
    benchmarks/.venv-peer/bin/pip install explainerdashboard==0.5.8 lightgbm psutil pyarrow

Usage: python benchmarks/bench_audit.py [--rows 10000 100000 1000000] [--peer-rows 10000 100000]
       [--peer-python benchmarks/.venv-peer/bin/python | none] [--timeout 600] [--repeat 5] [--features 20]
       [--no-browser] [--profile (cProfile of a selection, a clear and a zoom: WORK/profile-N.txt)]
       [--quick (seatrial 10k, peer 2k, in benchmarks/out/audit-quick)] [--json out.json]
Timings depend on the machine and its load; they never gate tests.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import tomllib
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
WORK = REPO / "benchmarks" / "out" / "audit"
PEER = Path(__file__).resolve().parent / "bench_explainerdashboard.py"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
TARGET = "target"


def rss_mib() -> float:
    "Resident memory of this process now, MiB."
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"): return int(line.split()[1]) / 1024
    return float("nan")


def peak_rss_mib() -> float:
    "Peak resident memory of this process, MiB (Linux reports KiB)."
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# ---------------------------------------------------------------- the data and the models (in the parent process)

def make_rows(n: int, seed: int, extra: int):
    "Test-like rows: demo_data's positions, times, vessels, features and target, plus `extra` numeric features."
    import numpy as np
    import pandas as pd
    from seatrial.audit.store import demo_data
    d = demo_data(n, seed=seed)
    f = d.frame
    X = d.values.copy()
    X["vessel_type"] = X["vessel_type"].cat.codes.astype("int8")   # 0/1: explainerdashboard's shap wants numbers
    rng = np.random.default_rng(seed + 100)
    target = f["target"].to_numpy().copy()
    for k in range(extra):
        x = rng.normal(0, 1, n)
        X[f"extra_{k:02d}"] = x
        target += (1.5 / (1 + k)) * (np.sin(2 * x) if k % 2 else x)   # weaker and weaker effects
    rows = pd.DataFrame({"row_id": f["row_id"].to_numpy(), "time": f["time"], "vessel_id": f["vessel_id"],
                         "lat": f["lat"].to_numpy(), "lon": f["lon"].to_numpy(), TARGET: target})
    return pd.concat([rows, X.set_index(rows.index)], axis=1), list(X.columns)


def prepare(work: Path, n: int, extra: int, train_rows: int) -> dict:
    "Train the candidate and the champion, save them and `n` test rows in `work` (reused when they are there)."
    import pickle

    import lightgbm as lgb
    meta_file = work / "model.json"
    want = {"rows": n, "extra": extra, "train_rows": train_rows, "lightgbm": lgb.__version__, "version": 3}
    if meta_file.exists():
        meta = json.loads(meta_file.read_text())
        if {k: meta.get(k) for k in want} == want: return meta
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    params = {"n_estimators": 100, "num_leaves": 31, "learning_rate": 0.1, "verbose": -1}
    models = {}
    for name, seed in (("model", 0), ("champion", 2)):
        train, feats = make_rows(train_rows, seed, extra)
        m = lgb.LGBMRegressor(**params, random_state=seed, subsample=0.8, subsample_freq=1 if name == "champion" else 0)
        m.fit(train[feats], train[TARGET])
        m.booster_.save_model(str(work / f"{name}.lgb"))
        models[name] = m
    with open(work / "model.pkl", "wb") as f: pickle.dump(models["model"], f)
    rows, feats = make_rows(n, 1, extra)
    # small row groups: a size reads its first rows only (one group of a million rows would be read whole, and its
    # memory counted in explainerdashboard's peak)
    rows.to_parquet(work / "rows.parquet", index=False, row_group_size=10_000)
    meta = {**want, "features": feats, "target": TARGET, "params": params, "prepare_s": time.perf_counter() - t0}
    meta_file.write_text(json.dumps(meta, indent=2))
    return meta


# ---------------------------------------------------------------- stage 1: the pipeline's work, in its own process

def head(path: Path, n: int):
    "The first `n` rows of a parquet file, reading no more row groups than it needs (it holds the largest size's rows)."
    import pyarrow as pa
    import pyarrow.parquet as pq
    batches, got = [], 0
    for b in pq.ParquetFile(path).iter_batches(batch_size=min(n, 65_536)):   # a batch never spans row groups
        batches.append(b.slice(0, n - got))
        got += len(batches[-1])
        if got >= n: break
    return pa.Table.from_batches(batches).to_pandas().reset_index(drop=True)


CONFIG = """name = "fleet"
task = "regression"

[table]
path = "features.parquet"
time = "time"
entity = "vessel_id"
lat = "lat"
lon = "lon"
target = "{target}"
features = {features}

{regimes}"""


def pipeline_stage(work: Path, n: int) -> dict:
    "Predict, explain and write one size's evidence files as the pipeline does; seconds of each step."
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from seatrial.evaluate import add_regimes
    from seatrial.explain import compute_shap, write_shap
    from seatrial.fleet import REGIMES_TOML
    meta = json.loads((work / "model.json").read_text())
    feats = meta["features"]
    out = work / f"rows-{n}"
    out.mkdir(exist_ok=True)
    t = time.perf_counter()
    rows = head(work / "rows.parquet", n)
    if len(rows) < n: raise SystemExit(f"{work / 'rows.parquet'} has {len(rows)} rows, fewer than {n}")
    read_s = time.perf_counter() - t
    X = rows[feats]
    cand, champ = (lgb.Booster(model_file=str(work / f"{m}.lgb")) for m in ("model", "champion"))
    t = time.perf_counter()
    pred, champion_pred = cand.predict(X), champ.predict(X)
    predict_s = time.perf_counter() - t
    t = time.perf_counter()
    shap = compute_shap(cand, X)
    shap_s = time.perf_counter() - t
    t = time.perf_counter()
    y = rows[TARGET].to_numpy()
    stw = rows["stw_kn"].to_numpy()
    p = pd.DataFrame({"row_id": rows["row_id"], "split": "test", "target": y, "pred": pred,
                      "baseline_pred": np.polyval(np.polyfit(stw ** 3, y, 1), stw ** 3), "champion_pred": champion_pred,
                      "residual": y - pred, "time": rows["time"], "vessel_id": rows["vessel_id"],
                      "lat": rows["lat"], "lon": rows["lon"]})
    regimes = add_regimes(rows[["vessel_id", "stw_kn", "hs_m", "lat", "lon", "time"]],   # as the evaluate stage labels
                          tomllib.loads(REGIMES_TOML)["regimes"])
    p = p.join(regimes.filter(like="regime_"))
    p.to_parquet(out / "predictions.parquet", index=False)
    write_shap(shap, rows["row_id"].to_numpy(), out / "shap.parquet")
    rows.assign(split="test").to_parquet(out / "features.parquet", index=False)
    (out / "dataset.toml").write_text(CONFIG.format(target=TARGET, features=json.dumps(feats), regimes=REGIMES_TOML))
    rmse = lambda a: float(np.sqrt(np.mean((y - a) ** 2)))   # noqa: E731
    (out / "metrics.json").write_text(json.dumps({"overall": {"rmse": rmse(pred)}, "champion": {"rmse": rmse(champion_pred)}}))
    (out / "checks.json").write_text(json.dumps([{"name": "plausible", "passed": True, "value": None, "threshold": None,
                                                  "meaning": "Every prediction must be a plausible number."}]))
    write_s = time.perf_counter() - t
    return {"rows": n, "read_s": read_s, "predict_s": predict_s, "shap_s": shap_s, "write_s": write_s,
            "peak_rss_mib": peak_rss_mib()}


# ---------------------------------------------------------------- stage 2: the app's server, in its own process

def _files(out: Path) -> dict[str, Path]:
    return {"predictions": out / "predictions.parquet", "shap": out / "shap.parquet", "features": out / "features.parquet",
            "config": out / "dataset.toml", "metrics": out / "metrics.json", "checks": out / "checks.json"}


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 600) -> tuple[float, int]:
    "Seconds until the whole response of a GET has arrived, and its size."
    import urllib.request
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r: body = r.read()
    return time.perf_counter() - t, len(body)


def _in_session(doc, fn) -> tuple[float, float]:
    """Run `fn` in a session's document on the server's event loop, as a browser event is handled; seconds until `fn`
    returned, and until every update it queued on the loop has run too."""
    done, out = threading.Event(), {}

    def last():
        out["all"] = time.perf_counter() - out["t0"]
        done.set()

    def first():
        out["t0"] = time.perf_counter()
        try: fn()
        except BaseException as e:   # reported by the caller
            out["error"] = e
        out["fn"] = time.perf_counter() - out["t0"]
        doc.add_next_tick_callback(last)

    doc.add_next_tick_callback(first)
    if not done.wait(600): raise TimeoutError("the server did not run the session callback within 600 s")
    if "error" in out: raise out["error"]
    return out["fn"], out["all"]


# the browser: wait until Bokeh says the document is idle and a large canvas (the map) has drawn pixels
_DRAWN = """() => {
  const docs = (window.Bokeh && window.Bokeh.documents) || [];
  if (!docs.length || !docs.every(d => d.is_idle)) return false;
  const canvases = [];
  const walk = root => { for (const el of root.querySelectorAll('*')) {
      if (el.tagName === 'CANVAS') canvases.push(el);
      if (el.shadowRoot) walk(el.shadowRoot); } };
  walk(document);
  for (const c of canvases) {
    if (c.width < 200 || c.height < 200) continue;
    const ctx = c.getContext('2d'); if (!ctx) continue;
    const d = ctx.getImageData(0, 0, c.width, c.height).data;
    let ink = 0;
    for (let i = 3; i < d.length; i += 4 * 97) if (d[i] > 0) ink++;
    if (ink > 50) return true;
  }
  return false;
}"""


def _zoom_streams(root, map_view) -> list:
    """The RangeXY streams that a zoom of the map updates: those of the DynamicMaps nested in the map's HoloViews pane
    (the datashader points and tracks) and those attached to them (the map's own range stream)."""
    import holoviews as hv
    import panel as pn
    from holoviews.core.spaces import get_nested_dmaps, get_nested_streams
    box = getattr(map_view, "streams", {}).get("box")
    for pane in root.select(pn.pane.HoloViews):
        if box is None or not isinstance(pane.object, hv.DynamicMap): continue
        dmaps = get_nested_dmaps(pane.object)
        if not any(d is box.source for d in dmaps): continue
        found: list = []
        for st in [*get_nested_streams(pane.object), *(x for d in dmaps for x in hv.streams.Stream.registry.get(d, []))]:
            if isinstance(st, hv.streams.RangeXY) and not any(st is f for f in found): found.append(st)
        return found
    return []


def _zoom(streams: list, box: tuple) -> None:
    "What the server does when the browser zooms the map: every RangeXY stream of the plot updated, then triggered."
    import holoviews as hv
    for s in streams: s.update(x_range=(box[0], box[2]), y_range=(box[1], box[3]))
    hv.streams.Stream.trigger(streams)


def _select(app, box: tuple) -> None:
    "What the server does when the browser's box selection arrives: the map's BoundsXY stream's event."
    stream = getattr(app.map, "streams", {}).get("box")
    if stream is not None: stream.event(bounds=box)
    else: app.store.select_box(*box)


class _ErrorLog:
    "Collects the errors that Bokeh, Panel and Tornado log while serving (a view that raised)."
    def __init__(self):
        import logging
        self.records: list[str] = []
        handler = logging.Handler(logging.ERROR)
        handler.emit = lambda r: self.records.append(r.getMessage() + ("\n" + logging.Formatter().formatException(r.exc_info)
                                                                        if r.exc_info else ""))
        for name in ("bokeh", "panel", "tornado", "holoviews", "param"):
            logging.getLogger(name).addHandler(handler)


def server_stage(work: Path, n: int, repeat: int, browser: bool, profile: bool = False) -> dict:
    "Load one size's version as the app does, serve it, time the first page, a selection and a zoom; memory."
    res: dict = {"rows": n}
    errors = _ErrorLog()
    t = time.perf_counter()
    import panel as pn
    from seatrial.audit import serve
    from seatrial.audit.app import AuditApp
    from seatrial.audit.store import AuditStore, cached_version, load_version
    res["import_s"] = time.perf_counter() - t
    t = time.perf_counter()
    # what serve_audit's default app factory does when serving starts (hv.extension, and any warm-up it adds);
    # the factory it returns opens versions from a project's registry, which this benchmark has not got
    if hasattr(serve, "_audit_app"): serve._audit_app()
    else:
        import holoviews as hv
        hv.extension("bokeh", logo=False)
    res["server_setup_s"] = time.perf_counter() - t
    out = work / f"rows-{n}"
    t = time.perf_counter()
    # version 2 under review, version 1 the champion, whose predictions the evaluate stage stored beside it
    data = cached_version(("bench", n), lambda: load_version(_files(out), "2", "1", evaluated="1"))
    res["load_s"] = time.perf_counter() - t
    res["rss_loaded_mib"] = rss_mib()
    sessions: list = []

    def session(root, identity):   # serve_audit's app_factory: a new store per session over the version loaded once
        store = AuditStore.from_data(cached_version(("bench", n), lambda: None), model="fleet", version="2",
                                     identity=identity)
        app = AuditApp(store=store)
        try: view = pn.panel(app)   # what Panel does with it next; an error here would only show in the page
        except Exception:
            import traceback
            errors.records.append(traceback.format_exc())
            raise
        sessions.append((app, view, pn.state.curdoc))
        return view

    port = _free_port()
    server = serve.serve_audit(out, address="127.0.0.1", port=port, threaded=True, app_factory=session)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(100):   # the server thread is listening
            try:
                _get(url + "favicon.ico", 5)
                break
            except OSError:
                time.sleep(0.1)
        res["page_http_first_s"], res["page_bytes"] = _get(url)
        if not sessions: raise RuntimeError("the first page made no session of the app:\n" + "\n".join(errors.records))
        res["page_http_s"] = statistics.median(_get(url)[0] for _ in range(max(1, repeat // 2)))
        res["rss_after_pages_mib"] = rss_mib()
        if browser and CHROMIUM.exists():
            res.update(_browser(url, sessions, n, repeat, work, profile))
        else:   # without a connected client Panel holds every update until one connects: nothing to time
            res["rerender"] = "not timed: needs a browser (Panel applies updates only once a client has connected)"
        res["rss_mib"] = rss_mib()
        res["peak_rss_mib"] = peak_rss_mib()
        res["sessions"] = len(sessions)
    finally:
        server.stop()
    if errors.records:   # a view that failed renders nothing, fast: its times would mean nothing
        raise RuntimeError(f"the server logged {len(errors.records)} errors while serving the app; the first:\n"
                           + errors.records[0])
    del data
    return res


def _boxes(store, repeat: int):
    "Box selections of about a quarter of the points, different each time (a new selection each re-render)."
    import numpy as np
    f, c = store.frame, store.columns
    lon, lat = f[c["lon"]].to_numpy(), f[c["lat"]].to_numpy()
    (x0, x1), (y0, y1) = np.percentile(lon, [10, 90]), np.percentile(lat, [10, 90])
    for i in range(repeat):
        s = 0.5 + 0.05 * i
        cx, cy = x0 + (x1 - x0) * (0.3 + 0.05 * i), y0 + (y1 - y0) * (0.3 + 0.05 * i)
        yield cx - (x1 - x0) * s / 2, cy - (y1 - y0) * s / 2, cx + (x1 - x0) * s / 2, cy + (y1 - y0) * s / 2


def _profile(app, root, doc, path: Path) -> None:
    "cProfile of one selection and one zoom in the live session, the slowest calls first, written to `path`."
    import cProfile
    import io
    import pstats
    box = next(_boxes(app.store, 1))
    streams = _zoom_streams(root, app.map)
    with open(path, "w") as out:
        for what, fn in (("selection", lambda: _select(app, box)), ("clear selection", app.map.clear),
                         ("zoom", lambda: _zoom(streams, box))):
            prof = cProfile.Profile()
            _in_session(doc, lambda fn=fn, prof=prof: prof.runcall(fn))
            buf = io.StringIO()
            pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(60)
            pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(25)
            out.write(f"==== {what}\n{buf.getvalue()}\n")


def _rerender(app, root, doc, repeat: int, profile: Path | None = None) -> dict:
    """In a live session: box selections (each followed by "Clear selection": every row again), zooms, and opening the
    Explanations tab with a selection on; seconds (medians), each until every update it queued has run."""
    import numpy as np
    import panel as pn
    store = app.store
    res: dict = {"rasterised": bool(getattr(app.map, "large", False))}
    if profile is not None: _profile(app, root, doc, profile)
    times: dict[str, list] = {"select": [], "clear": [], "zoom": []}
    sizes = []
    for box in _boxes(store, repeat):
        times["select"].append(_in_session(doc, lambda box=box: _select(app, box))[1])
        sizes.append(int(store.mask.sum()) if store.mask is not None else len(store.frame))
        times["clear"].append(_in_session(doc, app.map.clear)[1])
    res["selected_rows"] = int(np.median(sizes))
    streams = _zoom_streams(root, app.map)
    res["zoom_streams"] = len(streams)
    if streams:
        for box in _boxes(store, repeat):
            times["zoom"].append(_in_session(doc, lambda box=box: _zoom(streams, box))[1])
    for k, v in times.items():
        if v: res[f"{k}_s"], res[f"{k}_s_max"] = statistics.median(v), max(v)
    tabs = [t for t in root.select(pn.Tabs) if "Explanations" in getattr(t, "_names", [])]
    if tabs:   # a reviewer with a selection on turns to the explanations: the tab is built then, and stays
        tab, review = tabs[0], tabs[0].active
        _in_session(doc, lambda: _select(app, next(_boxes(store, 1))))
        res["explanations_tab_s"] = _in_session(doc, lambda: setattr(tab, "active", tab._names.index("Explanations")))[1]
        res["review_tab_s"] = _in_session(doc, lambda: setattr(tab, "active", review))[1]
        _in_session(doc, app.map.clear)
        again = [_in_session(doc, lambda box=box: _select(app, box))[1] for box in _boxes(store, repeat)]
        res["select_all_tabs_s"], res["select_all_tabs_s_max"] = statistics.median(again), max(again)
        _in_session(doc, app.map.clear)
    return res


def _browser(url: str, sessions: list, n: int, repeat: int, work: Path, profile: bool) -> dict:
    "A headless Chromium: seconds from goto until the map is drawn (best of a few), then re-renders in its session."
    from playwright.sync_api import sync_playwright
    res: dict = {}
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            times = []
            for i in range(max(1, min(3, repeat))):
                page = b.new_page(viewport={"width": 1600, "height": 1000})
                before = len(sessions)
                t = time.perf_counter()
                page.goto(url, wait_until="commit", timeout=600_000)
                page.wait_for_function(_DRAWN, timeout=600_000, polling=50)
                times.append(time.perf_counter() - t)
                if i + 1 < max(1, min(3, repeat)): page.close()
            res["page_browser_first_s"], res["page_browser_s"] = times[0], min(times)
            if len(sessions) <= before: raise RuntimeError("the browser's page made no new session on the server")
            page.screenshot(path=str(work / f"app-{n}.png"))
            res.update(_rerender(*sessions[-1], repeat, work / f"profile-{n}.txt" if profile else None))
            page.wait_for_function(_DRAWN, timeout=600_000, polling=50)
            page.screenshot(path=str(work / f"app-{n}-after.png"))
        finally:
            b.close()
    return res


# ---------------------------------------------------------------- the parent: run everything, print the table

def run_json(args: list[str], timeout: float) -> dict:
    "Run a process that prints a JSON line last; its result, {'timeout': s} or {'error': text}."
    import signal
    t = time.perf_counter()
    # its own process group: on a timeout the browser and anything else it started are stopped with it
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"timeout": timeout}
    lines = [x for x in out.splitlines() if x.startswith("{")]
    if proc.returncode or not lines:
        return {"error": (err or out)[-3000:], "wall_s": time.perf_counter() - t}
    return {**json.loads(lines[-1]), "wall_s": time.perf_counter() - t}


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version
    out = {}
    for name in ("seatrial", "panel", "holoviews", "bokeh", "datashader", "lightgbm", "pandas", "numpy", "playwright"):
        try: out[name] = version(name)
        except PackageNotFoundError: out[name] = "-"
    return out


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError: pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), {mem:.1f} GiB RAM, Python {platform.python_version()}"


def _s(x, limit: float | None = None) -> str:
    if isinstance(x, dict):
        if "timeout" in x: return f"> {x['timeout']:.0f} s"
        if "error" in x: return "failed"
        return "–"
    return "–" if x is None else f"{x:.2f}" if x < 10 else f"{x:.1f}"


def _mib(x) -> str:
    return "–" if x is None else f"{x / 1024:.2f} GiB" if x >= 1024 else f"{x:.0f} MiB"


def _ready(s: dict) -> float | None:
    "Seconds until a reviewer sees the version: its load from parquet, then a new session's page (browser, else HTTP)."
    page = s.get("page_browser_s", s.get("page_http_s"))
    return None if page is None or "load_s" not in s else s["load_s"] + page


def table(seatrial: dict, peer: dict, rows: list[int], peer_rows: list[int]) -> str:
    "The side-by-side table, one line per size."
    lines = ["| rows | seatrial: load s | first page s: HTTP / browser | selection s: box / clear | zoom s "
             "| server RSS (peak) | explainerdashboard build s: interactions on / off | its peak RSS: on / off "
             "| explainerdashboard build ÷ seatrial load + page: on / off |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def ed(r):
        return "–" if r is None else _s(r) if ("timeout" in r or "error" in r) else _s(r["total_s"])

    def ed_mem(r):
        return "–" if r is None or "peak_rss_mib" not in r else _mib(r["peak_rss_mib"])

    def ratio(r, ours):
        if r is None or not ours: return "–"
        if "total_s" in r: return f"{r['total_s'] / ours:,.0f}×"
        return f"> {r['timeout'] / ours:,.0f}×" if "timeout" in r else "–"

    for n in sorted(set(rows) | set(peer_rows)):
        s = seatrial.get(n, {}).get("server", {})
        on, off = peer.get((n, True)), peer.get((n, False))
        if n not in rows: cells = ["–"] * 5
        elif "error" in s or "timeout" in s: cells = [_s(s)] + ["–"] * 4
        else:
            zoom = "client-side" if s.get("rasterised") is False else _s(s.get("zoom_s"))
            cells = [_s(s.get("load_s")),
                     f"{_s(s.get('page_http_s'))} / {_s(s.get('page_browser_s'))}",
                     f"{_s(s.get('select_s'))} / {_s(s.get('clear_s'))}", zoom, f"{_mib(s.get('rss_mib'))} ({_mib(s.get('peak_rss_mib'))})"]
        ours = _ready(s)
        lines.append(f"| {n:,} | " + " | ".join(cells) + f" | {ed(on)} / {ed(off)} | {ed_mem(on)} / {ed_mem(off)} "
                     f"| {ratio(on, ours)} / {ratio(off, ours)} |")
    return "\n".join(lines)


def detail_table(seatrial: dict) -> str:
    "Further server-side timings of the app, per size."
    lines = ["| rows | server start s: imports / warm-up | first session's page (HTTP) s | rows selected (median) | box selection s (max) "
             "| clear selection s (max) | zoom s (max) | open the Explanations tab s | back to Review s "
             "| box selection with Explanations built s (max) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for n, r in sorted(seatrial.items()):
        s = r.get("server", {})
        if "load_s" not in s: lines.append(f"| {n:,} | {_s(s)} | | | | | | | | |"); continue
        sel = s.get("selected_rows")
        lines.append(f"| {n:,} | {_s(s.get('import_s'))} / {_s(s.get('server_setup_s'))} | {_s(s.get('page_http_first_s'))} | {'–' if sel is None else f'{sel:,}'} "
                     f"| {_s(s.get('select_s_max'))} | {_s(s.get('clear_s_max'))} "
                     f"| {'client-side' if s.get('rasterised') is False else _s(s.get('zoom_s_max'))} "
                     f"| {_s(s.get('explanations_tab_s'))} | {_s(s.get('review_tab_s'))} "
                     f"| {_s(s.get('select_all_tabs_s'))} ({_s(s.get('select_all_tabs_s_max'))}) |")
    return "\n".join(lines)


def pipeline_table(seatrial: dict) -> str:
    lines = ["| rows | predict s (candidate + champion) | SHAP s (compute_shap) | write parquet s | peak RSS |",
             "|---:|---:|---:|---:|---:|"]
    for n, r in sorted(seatrial.items()):
        p = r.get("pipeline", {})
        if "shap_s" not in p: lines.append(f"| {n:,} | {_s(p)} | | | |"); continue
        lines.append(f"| {n:,} | {_s(p['predict_s'])} | {_s(p['shap_s'])} | {_s(p['write_s'])} | {_mib(p['peak_rss_mib'])} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000], help="seatrial's sizes")
    ap.add_argument("--peer-rows", type=int, nargs="+", default=[10_000, 100_000], help="explainerdashboard's sizes")
    ap.add_argument("--peer-python", default=str(REPO / "benchmarks" / ".venv-peer" / "bin" / "python"),
                    help="python of the venv with explainerdashboard 0.5.8 (see the docstring); 'none' skips the peer")
    ap.add_argument("--timeout", type=float, default=600, help="seconds allowed to each explainerdashboard build")
    ap.add_argument("--stage-timeout", type=float, default=3600, help="seconds allowed to each seatrial process")
    ap.add_argument("--repeat", type=int, default=5, help="selections and zooms timed per size (median reported)")
    ap.add_argument("--features", type=int, default=20, help="model features: demo_data's 5 plus the rest synthetic")
    ap.add_argument("--train-rows", type=int, default=100_000)
    ap.add_argument("--no-browser", action="store_true", help="time the first page by HTTP only")
    ap.add_argument("--profile", action="store_true", help="cProfile one selection and zoom per size: WORK/profile-N.txt")
    ap.add_argument("--quick", action="store_true", help="a smoke run: --rows 10000 --peer-rows 2000 --repeat 2")
    ap.add_argument("--work", help=f"work folder: models, rows, evidence files, screenshots (default {WORK.relative_to(REPO)}, "
                                   "with --quick its sibling audit-quick)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--stage", choices=["pipeline", "server"], help=argparse.SUPPRESS)   # the child processes
    ap.add_argument("--n", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    work = Path(a.work) if a.work else WORK.with_name("audit-quick") if a.quick else WORK
    if a.stage:
        r = (pipeline_stage(work, a.n) if a.stage == "pipeline" else server_stage(work, a.n, a.repeat, not a.no_browser, a.profile))
        print(json.dumps(r), flush=True)
        return
    if a.quick: a.rows, a.peer_rows, a.repeat, a.train_rows = [10_000], [2_000], 2, 20_000
    if a.features < 5: ap.error("--features must be at least 5 (demo_data's own)")
    print(f"machine: {machine()}")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()), flush=True)
    meta = prepare(work, max(a.rows + a.peer_rows), a.features - 5, a.train_rows)
    print(f"model: LGBMRegressor 100 trees, 31 leaves, {len(meta['features'])} features, trained on {a.train_rows:,} rows; "
          f"work folder {work}", flush=True)
    me = [sys.executable, str(Path(__file__).resolve()), "--work", str(work), "--repeat", str(a.repeat)]
    if a.no_browser: me.append("--no-browser")
    if a.profile: me.append("--profile")
    seatrial: dict = {}
    for n in a.rows:
        pipe = run_json([*me, "--stage", "pipeline", "--n", str(n)], a.stage_timeout)
        print(f"seatrial {n:,} rows, pipeline: {json.dumps(pipe)}", flush=True)
        srv = run_json([*me, "--stage", "server", "--n", str(n)], a.stage_timeout) if "shap_s" in pipe else {"error": "no pipeline"}
        print(f"seatrial {n:,} rows, app: {json.dumps(srv)}", flush=True)
        seatrial[n] = {"pipeline": pipe, "server": srv}
    peer: dict = {}
    peer_versions = None
    if a.peer_python != "none":
        if not Path(a.peer_python).exists():
            print(f"no peer: {a.peer_python} does not exist; create the venv as the docstring says, or pass --peer-python")
        else:
            for n in a.peer_rows:
                for inter in (True, False):
                    args = [a.peer_python, str(PEER), "--work", str(work), "--rows", str(n)]
                    r = run_json(args + ([] if inter else ["--no-interactions"]), a.timeout)
                    peer[(n, inter)] = r
                    peer_versions = r.get("versions", peer_versions)
                    print(f"explainerdashboard {n:,} rows, interactions {'on' if inter else 'off'}: {json.dumps(r)}", flush=True)
    if peer_versions: print("peer versions: " + ", ".join(f"{k} {v}" for k, v in peer_versions.items()))
    print()
    print(table(seatrial, peer, a.rows, a.peer_rows))
    print()
    print("More of seatrial's app, server-side (the slowest of --repeat where it says max):")
    print()
    print(detail_table(seatrial))
    print()
    print("Pipeline work behind seatrial's figures (done once per model version, before anyone opens the app):")
    print()
    print(pipeline_table(seatrial))
    print()
    print("Target (issue 3), at 1M test points: first page < 3 s, a selection or a zoom re-rendered < 0.5 s server-side, "
          "the server < 4 GiB.\n'selection s', 'zoom s': from the browser's event on the server's loop until every update it "
          "queued has run (median of --repeat; 'client-side': below the map's datashader threshold the browser zooms "
          "alone). 'browser': from goto until the map is drawn, a new session (best of 3). explainerdashboard's build "
          "includes its SHAP computation; seatrial's SHAP is pipeline work, below.")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"params": vars(a), "machine": machine(), "versions": versions(), "peer_versions": peer_versions,
                       "seatrial": {str(k): v for k, v in seatrial.items()},
                       "explainerdashboard": [{"rows": k[0], "interactions": k[1], **v} for k, v in peer.items()]}, f, indent=2)


if __name__ == "__main__":
    main()
