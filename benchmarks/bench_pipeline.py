"""Orchestration overhead: the pipeline through `seatrial run` against the same stage code in one Python process.

For a demo fleet of N rows, in one benchmark run:
  A. in-process: each stage notebook's code cells executed with `exec` in one long-lived Python process, with the
     same parameters the runner would inject, figures rendered to PNG as in a notebook (no kernels, no papermill,
     no MLflow, no HTML, no hashing);
  B. the real thing: `seatrial run` in a fresh project folder (a new process, papermill kernels, executed notebooks
     and HTML in reports/, manifests and hashes, MLflow on a fresh SQLite store, the model registered);
  C. the same `seatrial run` again, with nothing changed (every stage reused);
  and the peer, plain papermill: each stage through the `papermill` command, one process per stage (no MLflow, no
  HTML, no caching: it does less than B).
Overhead of a stage = its time in B minus its time in A. Prints a table and the ratio.

    python benchmarks/bench_pipeline.py --rows 200000 1000000
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "nbs" / "pipeline"
SEATRIAL = Path(sys.executable).parent / "seatrial"


def in_process(config: Path, run_dir: Path) -> dict[str, float]:
    "Run every stage's code cells in this process; seconds per stage."
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from seatrial.runner import discover_stages
    seconds = {}
    cwd = os.getcwd()
    os.chdir(PIPELINE)
    try:
        for stage in discover_stages(PIPELINE):
            nb = json.loads(stage.notebook.read_text())
            cells = [c for c in nb["cells"] if c["cell_type"] == "code"]
            ns = {}
            exec("".join(cells[0]["source"]), ns)   # the parameters cell: the defaults ...
            ns.update(config=str(config), run_dir=str(run_dir), out_dir=str(run_dir / stage.name), upstream={},
                      run_id="in-process", champion_model="")   # ... then what the runner injects
            t0 = time.perf_counter()
            for c in cells[1:]:
                exec(compile("".join(c["source"]), f"{stage.label}", "exec"), ns)
                for num in plt.get_fignums():   # as the notebook does: every figure rendered to PNG
                    plt.figure(num).savefig(io.BytesIO(), format="png", bbox_inches="tight")
                plt.close("all")
            seconds[stage.name] = time.perf_counter() - t0
    finally:
        os.chdir(cwd)
    return seconds


def papermill_cli(config: Path, run_dir: Path) -> dict[str, float]:
    "The peer: each stage through the plain `papermill` command, one process per stage; seconds per stage."
    from seatrial.runner import discover_stages
    papermill = Path(sys.executable).parent / "papermill"
    seconds = {}
    run_dir.mkdir(parents=True)   # papermill writes into an existing folder only
    for stage in discover_stages(PIPELINE):
        args = [str(papermill), str(stage.notebook), str(run_dir / f"{stage.label}.ipynb"), "--cwd", str(PIPELINE),
                "-p", "config", str(config), "-p", "run_dir", str(run_dir), "-p", "out_dir", str(run_dir / stage.name)]
        t0 = time.perf_counter()
        proc = subprocess.run(args, capture_output=True, text=True)
        seconds[stage.name] = time.perf_counter() - t0
        if proc.returncode: sys.exit(f"papermill failed on {stage.label}:\n{proc.stderr[-2000:]}")
    return seconds


def through_runner(root: Path, config: Path) -> tuple[float, dict[str, float], str]:
    "`seatrial run` as a user runs it; (wall seconds, seconds per stage, run id)."
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    t0 = time.perf_counter()
    proc = subprocess.run([str(SEATRIAL), "--root", str(root), "run", "--config", str(config), "--pipeline", str(PIPELINE), "-q"],
                          capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode: sys.exit(f"seatrial run failed:\n{proc.stderr}")
    run_id = proc.stdout.strip()
    record = json.loads((root / "runs" / run_id / "run.json").read_text())
    return wall, {s["stage"]: s["seconds"] for s in record["stages"]}, run_id


def bench(rows: int, work: Path) -> dict:
    from seatrial.fleet import generate_demo
    data = work / f"data-{rows}"
    t0 = time.perf_counter()
    config = generate_demo(data, n_rows=rows, seed=0)["config"]
    gen = time.perf_counter() - t0
    a = in_process(config, work / f"inproc-{rows}")
    pm = papermill_cli(config, work / f"papermill-{rows}")
    wall, b, run_id = through_runner(work / f"project-{rows}", config)
    t0 = time.perf_counter()
    through = subprocess.run([str(SEATRIAL), "--root", str(work / f"project-{rows}"), "run", "--config", str(config),
                              "--pipeline", str(PIPELINE), "-q"], capture_output=True, text=True)
    noop = time.perf_counter() - t0
    assert through.stdout.strip() == run_id, through.stderr
    over = {s: b[s] - a[s] for s in a}
    total_a = sum(a.values())
    print(f"\n## {rows:,} telemetry rows (generated in {gen:.1f} s)\n")
    print("| stage | in one process (s) | papermill CLI per stage (s) | its overhead (s) | seatrial run (s) | its overhead (s) |")
    print("|---|---:|---:|---:|---:|---:|")
    for s in a: print(f"| {s} | {a[s]:.1f} | {pm[s]:.1f} | {pm[s] - a[s]:+.2f} | {b[s]:.1f} | {over[s]:+.2f} |")
    print(f"| **all stages** | {total_a:.1f} | {sum(pm.values()):.1f} | {sum(pm.values()) - total_a:+.2f} | "
          f"{sum(b.values()):.1f} | {sum(over.values()):+.2f} |")
    print(f"\n`seatrial run` end to end (new process, MLflow store created, model registered): {wall:.1f} s; "
          f"in-process stages: {total_a:.1f} s; ratio {wall / total_a:.2f}x")
    print(f"overhead per stage, median: {statistics.median(over.values()):.2f} s; "
          f"whole run vs in-process: {(wall - total_a):.1f} s = {(wall - total_a) / wall:.1%} of the run")
    print(f"no-op re-run (every stage reused), end to end: {noop:.2f} s")
    return {"rows": rows, "in_process": a, "papermill_cli": pm, "runner": b, "wall": wall, "noop": noop}


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000])
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = [bench(n, Path(tmp)) for n in args.rows]
    out = REPO / "benchmarks" / "out"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2))
