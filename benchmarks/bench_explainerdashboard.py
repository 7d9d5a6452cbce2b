"""The peer of bench_audit.py: explainerdashboard 0.5.8 builds its dashboard for the same LightGBM model and rows.

Runs in its own virtual environment (explainerdashboard and its dash stack stay out of the project's environment),
started by bench_audit.py once per size and setting, so each run's peak memory is its own:

    python3 -m venv benchmarks/.venv-peer
    benchmarks/.venv-peer/bin/pip install explainerdashboard==0.5.8 lightgbm psutil pyarrow

What is timed, as a user of explainerdashboard meets it: `RegressionExplainer(model, X, y)` and then
`ExplainerDashboard(explainer)` (which computes, up front, what its tabs show: SHAP values, with the defaults also SHAP
interaction values, permutation importances ...), until the dashboard object exists. The dashboard is not served:
building it is where the time goes. `--no-interactions` passes `shap_interaction=False`. explainerdashboard swallows
an error in any of those computations (the tab then fails later, in the browser), so this script checks afterwards
that the SHAP values (and interaction values, when on) and permutation importances really were computed.

The model: bench_audit.py trains one `lightgbm.LGBMRegressor` and saves it twice in its work folder, as LightGBM's
native text model (what seatrial reads) and pickled (explainerdashboard wants a fitted scikit-learn estimator, which
LightGBM cannot make from a text file). Before timing, this script checks that the pickled estimator predicts the
rows exactly as the text model does, so both sides explain the same model.

Prints one JSON line: rows, interactions, seconds (explainer, dashboard, total), peak RSS (MiB), versions.
Usage: python bench_explainerdashboard.py --work benchmarks/out/audit --rows 10000 [--no-interactions]
"""
from __future__ import annotations

import argparse
import json
import pickle
import platform
import resource
import sys
import time
import warnings
from pathlib import Path


def peak_rss_mib() -> float:
    "Peak resident memory of this process and its finished children, MiB (Linux reports KiB)."
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return max(own, kids) / 1024


def head(path: Path, n: int):
    "The first `n` rows of a parquet file, reading no more row groups than it needs (it holds the largest size's rows)."
    import pyarrow as pa
    import pyarrow.parquet as pq
    batches, got = [], 0
    for b in pq.ParquetFile(path).iter_batches(batch_size=min(n, 65_536)):   # a batch never spans row groups
        batches.append(b.slice(0, n - got))
        got += len(batches[-1])
        if got >= n: break
    return pa.Table.from_batches(batches).to_pandas()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, help="bench_audit.py's work folder (model.pkl, model.lgb, rows.parquet)")
    ap.add_argument("--rows", type=int, required=True, help="explain the first ROWS rows of rows.parquet")
    ap.add_argument("--no-interactions", action="store_true", help="ExplainerDashboard(..., shap_interaction=False)")
    a = ap.parse_args()
    work = Path(a.work)
    t_import = time.perf_counter()
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from explainerdashboard import ExplainerDashboard, RegressionExplainer
    import explainerdashboard
    import shap
    t_import = time.perf_counter() - t_import

    meta = json.loads((work / "model.json").read_text())
    rows = head(work / "rows.parquet", a.rows)
    if len(rows) < a.rows: sys.exit(f"{work / 'rows.parquet'} has {len(rows)} rows, fewer than --rows {a.rows}")
    X, y = rows[meta["features"]].reset_index(drop=True), rows[meta["target"]].reset_index(drop=True)
    with open(work / "model.pkl", "rb") as f: model = pickle.load(f)
    native = lgb.Booster(model_file=str(work / "model.lgb"))
    diff = float(np.abs(model.predict(X) - native.predict(X)).max())
    if diff > 1e-9: sys.exit(f"the pickled model predicts differently from model.lgb (max abs diff {diff:g}): not the same model")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t0 = time.perf_counter()
        explainer = RegressionExplainer(model, X, y)
        t1 = time.perf_counter()
        ExplainerDashboard(explainer, shap_interaction=not a.no_interactions)
        t2 = time.perf_counter()
    wanted = ["_shap_values_df", "_perm_imps"] + ([] if a.no_interactions else ["_shap_interaction_values"])
    if missing := [w for w in wanted if getattr(explainer, w, None) is None]:
        sys.exit(f"explainerdashboard built its dashboard without computing {missing}: an error was swallowed; "
                 "the time would not be comparable")
    print(json.dumps({"rows": a.rows, "interactions": not a.no_interactions, "explainer_s": t1 - t0,
                      "dashboard_s": t2 - t1, "total_s": t2 - t0, "import_s": t_import, "peak_rss_mib": peak_rss_mib(),
                      "max_abs_diff_vs_native": diff,
                      "versions": {"explainerdashboard": getattr(explainerdashboard, "__version__", "?"),
                                   "shap": shap.__version__, "lightgbm": lgb.__version__, "pandas": pd.__version__,
                                   "python": platform.python_version()}}), flush=True)


if __name__ == "__main__":
    main()
