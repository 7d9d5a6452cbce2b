"""The compiled trees (seatrial.compiled_trees: tl2cgen, gcc) beside LightGBM's own predict, on the demo model, in process.

What the model server does with a batch, without HTTP: the demo's telemetry rows that derive cleanly, checked and derived
as the server does it (`RequestSchema.parse` of an Arrow IPC body, `Deriver.derive`), then predicted by
- LightGBM: `booster.predict(X, num_threads=n)`, the peer;
- the compiled trees: `compile_trees` into a fresh temporary folder (the compile is timed: gcc, 8 C files one after the
  other), checked with `check_trees` on the version's own check rows, then `CompiledTrees.predict(X, n)`;
on one and on two threads, each `--repeat` times (median and best). One row alone: LightGBM's single-row C API (what the
server uses for one row) against the compiled trees through tl2cgen's Python API. Answers are compared row by row
(largest |difference| printed; the server refuses compiled trees beyond 1e-9 of the predictions' scale).

Usage: python benchmarks/bench_trees.py [--project DIR] [--rows 10000] [--repeat 9]
(--project: a demo project with fleet version 1 approved; without it one is made in a temporary folder, about 60 s).
Runs under OMP_WAIT_POLICY=PASSIVE. Timings depend on the machine and its load (printed); they never gate tests.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")   # before any OpenMP runtime is loaded
sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_serve  # the demo project and its clean records, made as the serving benchmark makes them


def timed(fn, repeat: int) -> tuple[float, float]:
    "(median, best) milliseconds of `repeat` calls."
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times), min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--project", type=Path)
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    import numpy as np
    from seatrial.compiled_trees import CompiledTrees, check_rows, check_trees, compile_trees, library_path, toolchain
    from seatrial.derive import Deriver
    from seatrial.export import version_test_rows
    from seatrial.model_server import single_row_predictor
    from seatrial.request import RequestSchema
    print(f"bench_trees: {platform.node()} {os.cpu_count()} cores, Python {platform.python_version()}, load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; lightgbm {metadata.version('lightgbm')}, {toolchain()}")
    with tempfile.TemporaryDirectory(prefix="bench_trees_") as tmp:
        root = args.project
        if root is None:
            root = Path(tmp) / "project"
            root.mkdir()
            bench_serve.make_project(root)
        data = bench_serve.workload_data(root.resolve(), args.rows)
        m = data["model"]
        booster = m.load_booster(num_threads=1)
        deriver = Deriver.for_model(m)
        X = deriver.derive(RequestSchema.for_deriver(deriver).parse(data["ours_arrow"], "application/vnd.apache.arrow.stream")).matrix
        print(f"model: {m.name} version {m.version}, {booster.num_trees()} trees, {booster.num_feature()} inputs; "
              f"{len(X):,} rows derived as the server derives them")

        t0 = time.perf_counter()
        path = compile_trees(booster, library_path(Path(tmp) / "compiled", m.sha256))
        compile_s = time.perf_counter() - t0
        trees = CompiledTrees(path)
        rows = check_rows(version_test_rows(root, m)[0])
        diff_check = check_trees(trees, booster, rows)
        print(f"compiled in {compile_s:.1f} s ({path.stat().st_size / 1e3:,.0f} kB); checked on {len(rows):,} rows: "
              f"largest difference from LightGBM {diff_check:.3g}")

        out = {}
        for n in (1, 2):
            out[f"lightgbm {n}"] = timed(lambda n=n: booster.predict(X, num_threads=n), args.repeat)
            out[f"compiled {n}"] = timed(lambda n=n: trees.predict(X, n), args.repeat)
        diff = float(np.max(np.abs(trees.predict(X, 2) - booster.predict(X, num_threads=2))))

        one_row = single_row_predictor(booster)
        sample = X[:2_000]
        def per_row(fn) -> float:
            t = []
            for r in sample:
                t0 = time.perf_counter_ns()
                fn(r)
                t.append(time.perf_counter_ns() - t0)
            return statistics.median(t) / 1e3
        lgb_one = per_row(one_row) if one_row is not None else float("nan")
        tree_one = per_row(lambda r: trees.predict(r[None, :], 1))

    print(f"\n{len(X):,}-row batch, {args.repeat} times      LightGBM (median / best)   compiled (median / best)   LightGBM / compiled")
    for n in (1, 2):
        (lm, lb), (cm, cb) = out[f"lightgbm {n}"], out[f"compiled {n}"]
        print(f"  {n} thread{'s' if n > 1 else ' '}                           {lm:7.1f} / {lb:5.1f} ms"
              f"         {cm:7.1f} / {cb:5.1f} ms         {lm / cm:5.2f}x")
    print(f"  largest |difference| on these rows: {diff:.3g}")
    print(f"one row, median of {len(sample):,}: LightGBM's single-row C API {lgb_one:.1f} us, compiled trees through "
          f"tl2cgen's Python API {tree_one:.1f} us ({lgb_one / tree_one:.2f}x)")
    print(f"load average at end {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
