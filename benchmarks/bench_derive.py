"""The model server's in-process work per /predict, step by step: request checks, derivation, the model.

On a demo fleet project (a `seatrial demo` run: its dataset config, vessels table, weather grid and trained model), the
demo's test rows are sent as the server gets them and each step is timed alone, in this process (no HTTP):
- parse: `RequestSchema.parse` of a JSON body (one record; 10,000 records) and of an Arrow IPC stream (10,000 rows);
- derive: `Deriver.derive(checked)`, the server's path (typed columns, no pandas), beside the paths the server used
  before: one record as a dict of its values (`{f: c[0]}`), a batch as the pandas frame `checked.frame()`;
- predict: LightGBM `predict` with one thread.
Each figure is the median and the 99th percentile over --repeat calls (one record) or --batch-repeat calls (10,000),
with the one-minute load average before and after (on a shared machine the figures move with it).
The answers are compared too: the new path's matrix equals the old paths' (bit for bit), and one record's row equals
its row in the batch. "Before" figures: run this script with PYTHONPATH at an older seatrial's src/ (e.g. one
extracted with `git archive`); the [new] steps are skipped where derive does not take a checked request yet.

Run:  OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE python benchmarks/bench_derive.py PROJECT [--repeat 5000] [--batch-repeat 30]
PROJECT is a folder where `seatrial demo` ran (it holds runs/*/train/model.txt); without one, a demo of 40,000 rows is
built in a temporary folder first (a few minutes). Timings depend on the machine and its load; they never gate tests.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def timed(fn, k: int) -> tuple[float, float]:
    "Median and 99th percentile of `fn()` in microseconds, over k calls after one warm-up call."
    fn()
    ts = np.empty(k)
    for i in range(k):
        t0 = time.perf_counter_ns()
        fn()
        ts[i] = time.perf_counter_ns() - t0
    return float(np.median(ts)) / 1e3, float(np.percentile(ts, 99)) / 1e3


def demo_project(where: Path) -> Path:
    "A demo fleet project of 40,000 rows, built by the real pipeline."
    root = where / "demo"
    root.mkdir()
    subprocess.run([str(Path(sys.executable).parent / "seatrial"), "demo", "--rows", "40000", "-q"], cwd=root, check=True)
    return root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("project", nargs="?", type=Path, help="a folder where `seatrial demo` ran")
    ap.add_argument("--repeat", type=int, default=5000, help="calls per one-record figure")
    ap.add_argument("--batch-repeat", type=int, default=30, help="calls per 10,000-row figure")
    a = ap.parse_args()

    import lightgbm as lgb
    import pyarrow as pa

    from seatrial.dataset import load_config
    from seatrial.derive import Deriver, model_categories
    from seatrial.request import RequestSchema
    from seatrial.train import booster_categorical

    root = a.project or demo_project(Path(tempfile.mkdtemp()))
    run = sorted(root.glob("runs/*/train/model.txt"))[0].parent.parent
    manifest = json.loads((run / "run.json").read_text()) if (run / "run.json").exists() else {}
    config_path = root / manifest.get("config", "data/demo/dataset.toml")
    model_file = run / "train" / "model.txt"
    booster = lgb.Booster(model_file=str(model_file))
    categorical = booster_categorical(booster)
    t0 = time.perf_counter()
    deriver = Deriver.from_config(config_path, booster.feature_name(), categorical, model_categories(model_file, categorical))
    schema = RequestSchema.for_deriver(deriver)
    print(f"{deriver}\nbuilt in {time.perf_counter() - t0:.2f} s; {schema}")

    config = load_config(config_path)
    raw = pd.read_parquet(config.table.path)
    rows = raw.iloc[np.arange(10_000) % len(raw)][deriver.fields].reset_index(drop=True)
    stamped = rows.assign(time=pd.to_datetime(rows["time"], utc=True))
    # every digit of each number (to_json keeps ten), so the JSON and Arrow bodies carry the same values
    records = [{f: (None if v != v else v) for f, v in r.items()}   # NaN as null, as Arrow has it
               for r in stamped.assign(time=stamped["time"].map(lambda t: t.isoformat())).to_dict("records")]
    one_body, batch_body = json.dumps(records[17]).encode(), json.dumps(records).encode()
    table = pa.Table.from_pandas(stamped, preserve_index=False)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w: w.write_table(table)
    arrow_body = sink.getvalue().to_pybytes()
    print(f"bodies: one record {len(one_body)} B JSON; 10,000 rows {len(batch_body) / 1e6:.2f} MB JSON, "
          f"{len(arrow_body) / 1e6:.2f} MB Arrow IPC")

    JSON, ARROW = "application/json", "application/vnd.apache.arrow.stream"
    one = schema.parse(one_body, JSON)
    batch = schema.parse(batch_body, JSON)
    batch_arrow = schema.parse(arrow_body, ARROW)
    old1, oldb = deriver.derive({f: c[0] for f, c in one.columns.items()}), deriver.derive(batch.frame())
    try: new1, newb, newa = deriver.derive(one), deriver.derive(batch), deriver.derive(batch_arrow)
    except Exception as e:   # a seatrial from before derive took a checked request (run with PYTHONPATH at an older src/)
        print(f"this seatrial's derive does not take a checked request ({type(e).__name__}): the [new] steps are skipped")
        new1 = newb = newa = None
    if new1 is not None:
        same = (np.array_equal(new1.matrix, old1.matrix, equal_nan=True) and np.array_equal(newb.matrix, oldb.matrix, equal_nan=True)
                and np.array_equal(newa.matrix, newb.matrix, equal_nan=True))
        print(f"answers: checked path == old paths, bit for bit: {same}")
    alone = np.array_equal(old1.matrix[0], oldb.matrix[17], equal_nan=True)
    print(f"answers: one record alone == its row in the batch, bit for bit: {alone}")

    n, k = a.repeat, a.batch_repeat
    steps = [
        ("one record", "parse JSON", lambda: schema.parse(one_body, JSON), n),
        ("one record", "derive(checked)  [new]", lambda: deriver.derive(one), n),
        ("one record", "derive({f: c[0]}) [old]", lambda: deriver.derive({f: c[0] for f, c in one.columns.items()}), n),
        ("one record", "predict", lambda: booster.predict(old1.matrix, num_threads=1), n),
        ("one record", "parse + derive [new]", lambda: deriver.derive(schema.parse(one_body, JSON)), n),
        ("10,000 rows", "parse JSON", lambda: schema.parse(batch_body, JSON), k),
        ("10,000 rows", "parse Arrow IPC", lambda: schema.parse(arrow_body, ARROW), k),
        ("10,000 rows", "derive(checked)  [new]", lambda: deriver.derive(batch), k),
        ("10,000 rows", "derive(frame())  [old]", lambda: deriver.derive(batch.frame()), k),
        ("10,000 rows", "predict", lambda: booster.predict(oldb.matrix, num_threads=1), k),
        ("10,000 rows", "parse Arrow + derive [new]", lambda: deriver.derive(schema.parse(arrow_body, ARROW)), k),
        ("10,000 rows", "parse JSON + derive [new]", lambda: deriver.derive(schema.parse(batch_body, JSON)), k),
    ]
    print(f"\nload average {os.getloadavg()[0]:.2f}; seatrial from {Path(Deriver.__module__ and sys.modules[Deriver.__module__].__file__).parent}")
    print(f"{'':12s} {'step':28s} {'median':>10s} {'p99':>10s}")
    for what, step, fn, reps in steps:
        if "[new]" in step and new1 is None: continue
        med, p99 = timed(fn, reps)
        unit, div = ("µs", 1) if what == "one record" else ("ms", 1e3)
        print(f"{what:12s} {step:28s} {med / div:8.1f} {unit} {p99 / div:8.1f} {unit}")
    print(f"load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
