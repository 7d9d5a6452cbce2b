"""SHAP for every row: seatrial.explain.compute_shap vs LightGBM's pred_contrib vs shap.TreeExplainer.

One LightGBM regression model (default: 200 trees, 63 leaves, max depth 8, 20 features) trained on synthetic data,
then the same rows explained three ways:

- `compute_shap`: seatrial (chunks of 200k rows, all cores, additivity checked on every row);
- `pred_contrib`: `booster.predict(X, pred_contrib=True)` in one call, all cores;
- `shap.TreeExplainer(booster).shap_values(X)`: the shap library (constructor timed apart).

Prints a Markdown table of rows/s and the largest absolute difference from compute_shap's values.
Usage: python benchmarks/bench_shap.py [--rows 100000 1000000] [--trees 200] [--leaves 63] [--max-depth 8]
       [--features 20] [--full-upto N (larger row counts: compute_shap only)] [--repeat 1] [--json out.json]
Timings depend on the machine and its load; they never gate tests.
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import time
import warnings
from functools import partial

import lightgbm as lgb
import numpy as np
import pandas as pd

from seatrial.explain import compute_shap


def make_data(n: int, p: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    "Synthetic tabular data: nonlinear effects, an interaction and noise."
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{i:02d}" for i in range(p)])
    y = (np.sin(X.x00 * 2) + X.x01**2 + X.x02 * X.x03 + np.where(X.x04 > 0, 1.5, 0)
         + 0.3 * X.iloc[:, 5:].sum(axis=1) + rng.normal(0, 0.3, n))
    return X, y.to_numpy()


def timed(fn):
    gc.collect()
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[100_000, 1_000_000])
    ap.add_argument("--trees", type=int, default=200)
    ap.add_argument("--leaves", type=int, default=63)
    ap.add_argument("--features", type=int, default=20)
    ap.add_argument("--max-depth", type=int, default=8, help="TreeSHAP costs leaves x depth² per tree and row")
    ap.add_argument("--train-rows", type=int, default=100_000)
    ap.add_argument("--full-upto", type=int, default=10**12,
                    help="above this many rows, time compute_shap only (pred_contrib and shap take as long again each)")
    ap.add_argument("--repeat", type=int, default=1, help="interleaved repetitions per method (best time kept)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    a = ap.parse_args()
    import shap

    threads = os.cpu_count() or 1
    Xt, yt = make_data(a.train_rows, a.features, 0)
    params = {"objective": "regression", "num_leaves": a.leaves, "learning_rate": 0.05, "min_data_in_leaf": 20, "max_depth": a.max_depth,
              "verbose": -1, "num_threads": threads, "seed": 0}
    booster, fit_s = timed(lambda: lgb.train(params, lgb.Dataset(Xt, yt), num_boost_round=a.trees))
    depth = max(_depth(t["tree_structure"]) for t in booster.dump_model()["tree_info"])
    print(f"model: {booster.num_trees()} trees, {a.leaves} leaves, {a.features} features, max depth {depth}; "
          f"fit {fit_s:.1f}s on {a.train_rows} rows; {threads} cores; lightgbm {lgb.__version__}, shap {shap.__version__}, "
          f"{platform.python_version()}")
    print("shap.TreeExplainer(booster).shap_values calls booster.predict with:", delegation(booster, shap))
    results = []
    for n in a.rows:
        X, _ = make_data(n, a.features, 1)
        res, t_cs = timed(partial(compute_shap, booster, X))
        ref = res.values.to_numpy()
        del res
        if n > a.full_upto:
            row = {"rows": n, "compute_shap_s": t_cs}
            results.append(row)
            print(json.dumps(row), flush=True)
            continue
        # the machine is shared: run the methods interleaved `repeat` times and keep each one's best time
        best = {"compute_shap_s": t_cs}
        diffs = {}
        for rep in range(a.repeat):
            if rep:
                best["compute_shap_s"] = min(best["compute_shap_s"], timed(partial(compute_shap, booster, X))[1])
            t = timed(partial(compute_shap, booster, X, check_additivity=False))[1]
            best["compute_shap_nocheck_s"] = min(best.get("compute_shap_nocheck_s", t), t)
            pc, t = timed(partial(booster.predict, X, pred_contrib=True, num_threads=threads))
            best["pred_contrib_s"] = min(best.get("pred_contrib_s", t), t)
            diffs["max_abs_diff_pred_contrib"] = float(np.abs(pc[:, :-1] - ref).max())
            del pc
            ex, t_ctor = timed(partial(shap.TreeExplainer, booster))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                sv, t_sv = timed(partial(ex.shap_values, X))
            best["tree_explainer_ctor_s"] = min(best.get("tree_explainer_ctor_s", t_ctor), t_ctor)
            t = t_ctor + t_sv
            best["tree_explainer_s"] = min(best.get("tree_explainer_s", t), t)
            diffs["max_abs_diff_tree_explainer"] = float(np.abs(sv - ref).max())
            del sv
        row = {"rows": n, "repeat": a.repeat, **best, **diffs}
        results.append(row)
        print(json.dumps(row), flush=True)
    print()
    print("| rows | method | seconds | rows/s | max abs diff vs compute_shap |")
    print("|---:|---|---:|---:|---:|")
    for r in results:
        n = r["rows"]
        if "pred_contrib_s" not in r:
            print(f"| {n:,} | compute_shap (additivity checked) | {r['compute_shap_s']:.2f} | {n / r['compute_shap_s']:,.0f} | |")
            continue
        for name, s, d in (("compute_shap (additivity checked)", r["compute_shap_s"], 0.0),
                           ("compute_shap (check_additivity=False)", r["compute_shap_nocheck_s"], 0.0),
                           ("booster.predict(pred_contrib=True)", r["pred_contrib_s"], r["max_abs_diff_pred_contrib"]),
                           ("shap.TreeExplainer: constructor + shap_values", r["tree_explainer_s"],
                            r["max_abs_diff_tree_explainer"])):
            print(f"| {n:,} | {name} | {s:.2f} | {n / s:,.0f} | {d:.1e} |")
        print(f"| {n:,} | (shap.TreeExplainer constructor alone) | {r['tree_explainer_ctor_s']:.2f} | | |")
    if a.json:
        with open(a.json, "w") as f: json.dump({"params": vars(a), "results": results}, f, indent=2)


def delegation(booster, shap) -> list[dict]:
    "The keyword arguments of every booster.predict call that shap.TreeExplainer makes (on 1000 rows)."
    calls, orig = [], booster.predict
    def spy(*args, **kw):
        calls.append(kw)
        return orig(*args, **kw)
    booster.predict = spy
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shap.TreeExplainer(booster).shap_values(make_data(1000, booster.num_feature(), 2)[0])
    finally:
        del booster.predict
    return calls


def _depth(node: dict) -> int:
    if "leaf_index" in node: return 0
    return 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))


if __name__ == "__main__":
    main()
