"""The workbench in a notebook kernel: how soon it shows, how fast its runs table and a comparison update, how often a
run's progress is read, and whether the notebook answers while a run goes on.

The project: the 40k-row sample (data/sample) with two real pipeline runs (`seatrial run` with a one-point search
grid, then `--from train` with another seed: two runs that compare for real), and 98 more runs made from the first
one's records (its run.json, manifests, metrics and checks copied under new run ids, starting a minute apart), so the
Runs tab reads 100 runs, 100 manifests and 100 metrics files as it would in a project with that history.

Everything is measured in a real IPython kernel (ipykernel, started by jupyter_client with the project as its working
directory), as JupyterLab runs it:
- appear: a fresh kernel per repeat; the time from sending the cell
  `from seatrial.workbench import Workbench; wb = Workbench("."); wb` to its reply (the widget's display message
  sent), and which heavy modules that cell imported (none of mlflow, panel, papermill, lightgbm, shap is allowed);
- the Runs tab: `wb.runs.refresh()` (runs_table of 100 runs, its HTML, the list to choose from), timed in the kernel;
- a comparison of the two real runs: `wb.runs.compare(a, b)` (the tables, the links and both figures drawn to PNG),
  timed in the kernel, the first time and again;
- a run: `wb.run.start()` from train with a new seed; while it goes, the client sends `1 + 1` every 0.5 s and times
  each reply; at its end, the times the Run tab read and showed the run's state (`wb.run.updates`): how many per
  second, and the longest gap between two.
Also `python -X importtime -c "import seatrial.workbench"`: the import's own cumulative time and its largest parts.

Usage: python benchmarks/bench_workbench.py [--project DIR] [--repeat 3] [--json out.json]
Timings depend on the machine and its load (printed with them); they never gate tests.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SEATRIAL = Path(sys.executable).parent / "seatrial"
GRID = '[{"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20}]'
HEAVY = ("mlflow", "panel", "papermill", "bokeh", "lightgbm", "shap", "nbclient", "holoviews", "datashader")


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return env | {"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "1")}


def _seatrial(root: Path, *args: str) -> None:
    proc = subprocess.run([str(SEATRIAL), "--root", str(root), *args], cwd=root, env=_env(), capture_output=True, text=True)
    if proc.returncode != 0: raise SystemExit(f"seatrial {' '.join(args)} failed:\n{proc.stderr}")


def make_project(root: Path, runs: int = 100) -> tuple[str, str]:
    "The project described above; the two real runs' ids."
    shutil.copytree(REPO / "data" / "sample", root / "data" / "sample")
    config = "data/sample/dataset.toml"
    _seatrial(root, "run", "--config", config, "-q", "-p", f"train.grid={GRID}")
    (first,) = [p.name for p in (root / "runs").iterdir()]
    _seatrial(root, "run", "--config", config, "-q", "-p", f"train.grid={GRID}", "-p", "train.seed=1", "--from", "train")
    (second,) = [p.name for p in (root / "runs").iterdir() if p.name != first]
    src = root / "runs" / first
    record = json.loads((src / "run.json").read_text())
    start = datetime.fromisoformat(record["started"]) - timedelta(days=1)
    for i in range(runs - 2):
        run = f"fleet-{(start + timedelta(minutes=i)):%Y%m%d-%H%M%S}-{i:04x}"
        dst = root / "runs" / run
        for f in src.rglob("*.json"):
            (dst / f.relative_to(src)).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(f, dst / f.relative_to(src))
        r = json.loads(json.dumps(record).replace(first, run))
        r["started"] = (start + timedelta(minutes=i)).isoformat()
        (dst / "run.json").write_text(json.dumps(r))
    return first, second


class Kernel:
    "An IPython kernel in the project folder, driven as JupyterLab drives it."

    def __init__(self, cwd: Path):
        from jupyter_client.manager import KernelManager
        self.km = KernelManager(kernel_name="python3")
        self.km.start_kernel(cwd=str(cwd), env=_env())
        self.kc = self.km.client()
        self.kc.start_channels()
        self.kc.wait_for_ready(timeout=120)

    def run(self, code: str, timeout: float = 600) -> tuple[float, str]:
        "Execute a cell: (seconds from sending it to its reply, its printed output); raise on an error."
        out, t0 = [], time.perf_counter()
        reply = self.kc.execute_interactive(code, timeout=timeout, output_hook=lambda m: out.append(m))
        took = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            raise RuntimeError("\n".join(reply["content"].get("traceback", []))[-3000:])
        return took, "".join(m["content"].get("text", "") for m in out if m["msg_type"] == "stream")

    def value(self, expr: str):
        "The value of an expression in the kernel (JSON)."
        return json.loads(self.run(f"import json as _j; print(_j.dumps({expr}))")[1])

    def close(self) -> None:
        self.kc.stop_channels()
        self.km.shutdown_kernel(now=True)


def _load() -> float:
    return os.getloadavg()[0]


def measure(project: Path, first: str, second: str, repeat: int) -> dict:
    out: dict = {"load_before": _load()}
    appear, imported = [], []
    for _ in range(repeat):   # a fresh kernel each time: the imports are paid as a new notebook pays them
        k = Kernel(project)
        try:
            took, _ = k.run('from seatrial.workbench import Workbench\nwb = Workbench(".")\nwb')
            appear.append(took)
            imported.append(k.value(f"sorted(m for m in {HEAVY!r} if m in __import__('sys').modules)"))
        finally:
            k.close()
    out |= {"appear": appear, "heavy_imported": sorted({m for x in imported for m in x})}

    k = Kernel(project)
    try:
        k.run('from seatrial.workbench import Workbench\nwb = Workbench(".")\nwb')
        k.run("import time\nt = time.perf_counter(); wb.show('Runs'); open_runs = time.perf_counter() - t")
        out["runs_tab_open"] = k.value("open_runs")
        out["runs_rows"] = k.value("len(wb.runs.table)")
        out["refresh"] = k.value("[(t := time.perf_counter(), wb.runs.refresh(), time.perf_counter() - t)[2] for _ in range(5)]")
        time.sleep(2)   # a person chooses two runs: the Dataset tab's map (matplotlib) is drawn meanwhile
        cmp = f"wb.runs.compare({first!r}, {second!r})"
        out["compare"] = k.value(f"[(t := time.perf_counter(), {cmp}, time.perf_counter() - t)[2] for _ in range(4)]")
        out["compare_tables_only"] = k.value(
            f"[(setattr(wb.runs, 'figures', False), t := time.perf_counter(), {cmp}, time.perf_counter() - t)[3] for _ in range(3)]")

        k.run("wb.parameters.set('train', 'grid', " + GRID + ")\nwb.parameters.set('train', 'seed', 7)\n"
              "wb.run.from_stage.value = 'train'\nwb.show('Run')\nrun = wb.run.start()")
        started, answers = time.time(), []
        while not k.value("wb.run.run.done and wb.run.state is not None and wb.run.state.done"):
            answers.append(k.run("1 + 1")[0])
            time.sleep(0.5)
        out["run_seconds"] = time.time() - started
        out["run_status"] = k.value("wb.run.state.status")
        out["answers"] = answers
        ups = k.value("wb.run.updates")
        gaps = [b - a for a, b in itertools.pairwise(ups)]
        out["updates"] = {"count": len(ups), "per_second": (len(ups) - 1) / (ups[-1] - ups[0]) if len(ups) > 1 else 0.0,
                          "max_gap": max(gaps) if gaps else None}
    finally:
        k.close()
    out["load_after"] = _load()
    return out


def import_time() -> dict:
    "python -X importtime: seatrial.workbench's cumulative import time and its largest direct parts (microseconds)."
    proc = subprocess.run([sys.executable, "-X", "importtime", "-c", "import seatrial.workbench"], capture_output=True,
                          text=True, env=_env())
    rows = []   # (name with its nesting as leading spaces, cumulative microseconds)
    for line in proc.stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if len(parts) == 3 and parts[1].strip().isdigit(): rows.append((parts[2], int(parts[1])))
    total = next(c for n, c in rows if n.strip() == "seatrial.workbench")
    direct = [(n.strip(), c) for n, c in rows if n.startswith("   ") and not n.startswith("    ")]   # one level down
    return {"total": total, "top": sorted(direct, key=lambda r: -r[1])[:6]}


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), "?")
    versions = {p: metadata.version(p) for p in ("ipywidgets", "ipykernel", "jupyter_client", "jupyterlab", "pandas", "matplotlib")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), "versions": versions}


def report(m: dict, imp: dict, info: dict) -> str:
    med = statistics.median
    a, ans, c = m["appear"], m["answers"], m["compare"]
    lines = [f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}; "
             + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
             f"load average (1 min): {m['load_before']:.2f} before, {m['load_after']:.2f} after",
             "",
             "| measure | target | result |", "|---|---:|---:|",
             f"| workbench shows (cell sent to reply, fresh kernel; median of {len(a)}, slowest) | 2 s | "
             f"{med(a):.2f} s ({max(a):.2f} s) |",
             f"| heavy modules imported on the way | none | {', '.join(m['heavy_imported']) or 'none'} |",
             f"| `import seatrial.workbench` (-X importtime, cumulative) | – | {imp['total'] / 1e6:.2f} s |",
             f"| Runs tab first opened ({m['runs_rows']} runs) | 0.5 s | {m['runs_tab_open']:.3f} s |",
             f"| runs table refreshed (median of {len(m['refresh'])}, slowest) | 0.5 s | {med(m['refresh']):.3f} s ({max(m['refresh']):.3f} s) |",
             f"| two runs compared, tables and both figures (first; then median) | 0.5 s | {c[0]:.3f} s; {med(c[1:]):.3f} s |",
             f"| two runs compared, tables only (median) | – | {med(m['compare_tables_only']):.3f} s |",
             f"| progress read and shown during a run ({m['run_seconds']:.0f} s, {m['run_status']}): per second; longest gap | ≥ 1 /s | "
             f"{m['updates']['per_second']:.2f} /s; {m['updates']['max_gap']:.2f} s |",
             f"| `1 + 1` answered while the run goes ({len(ans)} cells: median, 95th percentile, slowest) | 0.2 s | "
             f"{med(ans):.3f} s, {sorted(ans)[int(0.95 * (len(ans) - 1))]:.3f} s, {max(ans):.3f} s |",
             "",
             "largest parts of the import (cumulative): " + ", ".join(f"{n} {us / 1e6:.2f} s" for n, us in imp["top"])]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--project", type=Path, help="a project made by an earlier run of this benchmark (default: a new one)")
    ap.add_argument("--repeat", type=int, default=3, help="fresh kernels to time the workbench's first showing in")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    if args.project and (args.project / "bench-runs.json").exists():
        project = args.project
        first, second = json.loads((project / "bench-runs.json").read_text())
    else:
        project = args.project or Path(tempfile.mkdtemp(prefix="bench-workbench-")) / "project"
        t = time.time()
        first, second = make_project(project)
        (project / "bench-runs.json").write_text(json.dumps([first, second]))
        print(f"project {project}: 2 real runs and 98 copies, made in {time.time() - t:.0f} s", file=sys.stderr)
    info, imp = machine(), import_time()
    m = measure(project, first, second, args.repeat)
    print(report(m, imp, info))
    if args.json: args.json.write_text(json.dumps({"machine": info, "import": imp, "measures": m}, indent=1, default=str))


if __name__ == "__main__":
    main()
